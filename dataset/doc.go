// Package dataset turns a dataset's source files (Parquet, Arrow IPC, CSV,
// JSON Lines, in a local directory or below an S3 prefix) into numbered
// batches of a fixed number of rows, each encoded as one Arrow IPC file.
//
// # Index and snapshots
//
// Load lists the sources and indexes each one (format.Index: its kind,
// schema, rows, and the segments it decodes in — Parquet row groups, IPC
// record batches, blocks of text lines), then encodes every batch once to
// learn its exact size, so that a directory listing can show sizes without
// building anything. The index is persisted under Options.StateDir, keyed
// by the sources' identities (size and mtime, or ETag), the batch size and
// indexVersion with the arrow-go version, so a second mount of unchanged
// sources reads it back. The result is a Snapshot: an immutable view of the
// dataset at one set of source identities. A source that changes is
// noticed (Check, rate-limited by Options.CheckInterval; a read that sees
// the object change) and the dataset is re-indexed into a new generation;
// a batch is never built from a mix of old and new bytes (ErrChanged).
//
// # Building batches
//
// A batch's rows are cut from the decoded segments it overlaps and encoded
// (Build, BuildInto). Decoded segments are kept in a byte-bounded LRU with
// singleflight (segcache.go), so the batches cut from one row group decode
// it once. A batch built in dataset order starts decoding the segments
// after it in the background (readAhead: Options.ReadAhead of them, within
// the segment cache's room), so a reader crossing a row-group boundary
// finds the next one decoded; a shuffled view reads ahead in its own order.
// On S3, the segments read ahead in order are fetched through aligned
// spans of each object (spans.go): one GET for several row groups.
//
// # Views
//
// Views (view.go and view_*.go) are other orders and shapes of the same
// rows, named by a spec (seed, epoch, shuffle=batch|block:K, rank/world,
// format=npz): deterministic, so the same path gives the same bytes on
// every mount. Block-shuffled views build blocks of batches at a time,
// kept within Options.BlockBytes (blockmemo.go).
//
// Errors: a corrupt source is format.ErrCorrupt, wrapped with the file and
// segment, and fails only the batches that need it; read errors of the
// store are kept as the reason rather than reported as corruption.
package dataset
