package dataset

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"golang.org/x/sync/errgroup"

	"github.com/zenithfs/zenithfs/format"
	"github.com/zenithfs/zenithfs/source"
)

// The index pass. Sizes of batch files must be known exactly before any is
// read (stat must tell the truth), and for variable-width data (strings,
// binary, lists) only encoding the batch tells. So the first mount of a
// dataset decodes every segment once and encodes every batch into a
// counting writer, in parallel over contiguous batch ranges (so each
// worker reuses its decoded segments). The result — per-file indexes and
// per-batch sizes — is persisted under the state dir, keyed by the
// sources' identities, so later mounts of unchanged sources skip all of it.
// Per-file indexes are keyed per file, so when one file of a directory
// changes only that file is re-indexed (batch sizes are recomputed).

// persisted is the on-disk form of a snapshot's batch sizes.
type persisted struct {
	Version string  `json:"version"`
	ID      string  `json:"id"`
	Rows    int64   `json:"rows"`
	Sizes   []int64 `json:"sizes"`
}

func (d *Dataset) index(ctx context.Context, infos []source.Info) (*Snapshot, error) {
	start := time.Now()
	s := &Snapshot{ds: d, BatchSize: int64(d.opts.BatchSize), ID: snapshotID(d.key, d.loc, infos, d.opts), PermID: permID(d.loc, infos, d.opts)}
	s.Files = make([]*SourceFile, len(infos))
	pr := &d.progress
	pr.running.Store(true)
	defer pr.running.Store(false)
	pr.filesDone.Store(0)
	pr.filesTotal.Store(int64(len(infos)))
	pr.batchesDone.Store(0)
	pr.batchesTotal.Store(0)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.opts.Workers)
	for i, info := range infos {
		g.Go(func() error {
			f, err := d.indexFile(gctx, info)
			if err != nil {
				return err
			}
			s.Files[i] = f
			pr.filesDone.Add(1)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := d.unifyText(s.Files); err != nil {
		return nil, err
	}
	// Every file with rows must have the schema of the first such file; a
	// file of no rows gives no batch, and its schema does not matter.
	var first *SourceFile
	for _, f := range s.Files {
		sch, err := f.reader.File.Schema()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Info.Key, err)
		}
		switch {
		case first == nil && (f.Index.Rows > 0 || s.schema == nil):
			s.schema = sch
			if f.Index.Rows > 0 {
				first = f
			}
		case first != nil && f.Index.Rows > 0:
			if msg := schemaDiff(s.schema, sch); msg != "" {
				return nil, fmt.Errorf("%w: %s and %s: %s", ErrSchemaMismatch, first.Info.Key, f.Info.Key, msg)
			}
		}
		f.FirstRow = s.Rows
		s.Rows += f.Index.Rows
	}
	pr.batchesTotal.Store(int64(s.NumBatches()))
	if p, ok := d.loadSizes(s.ID); ok && p.Rows == s.Rows && len(p.Sizes) == s.NumBatches() {
		s.sizes = p.Sizes
		s.FromCache = true
		pr.batchesDone.Store(int64(len(p.Sizes)))
	} else {
		if err := s.computeSizes(ctx); err != nil {
			return nil, err
		}
		if len(s.batchErrs) == 0 {
			d.saveSizes(persisted{Version: d.key, ID: s.ID, Rows: s.Rows, Sizes: s.sizes})
		}
	}
	s.IndexedIn = time.Since(start)
	d.log.Info("dataset indexed", "files", len(s.Files), "rows", s.Rows, "batches", s.NumBatches(),
		"from_cache", s.FromCache, "took", s.IndexedIn.Round(time.Millisecond), "batch_errors", len(s.batchErrs))
	return s, nil
}

// schemaDiff describes how b differs from a by names and types ("" if not).
func schemaDiff(a, b *arrow.Schema) string {
	if a.NumFields() != b.NumFields() {
		return fmt.Sprintf("%d columns vs %d", a.NumFields(), b.NumFields())
	}
	for i := range a.Fields() {
		fa, fb := a.Field(i), b.Field(i)
		if fa.Name != fb.Name || !arrow.TypeEqual(fa.Type, fb.Type) {
			return fmt.Sprintf("column %d is %s %s vs %s %s", i, fa.Name, fa.Type, fb.Name, fb.Type)
		}
	}
	return ""
}

func (d *Dataset) indexFile(ctx context.Context, info source.Info) (*SourceFile, error) {
	key := d.fileKey(info)
	fi, ok := d.loadFileIndex(key)
	if !ok {
		obj := &object{ctx: ctx, store: d.loc.Store, key: info.Key, size: info.Size, etag: info.ETag}
		var err error
		fi, err = format.Index(ctx, info.Key, obj, d.opts.Format)
		if err != nil {
			return nil, obj.explain(err)
		}
		d.saveFileIndex(key, fi)
	}
	return d.sourceFile(info, fi), nil
}

func (d *Dataset) sourceFile(info source.Info, fi *format.File) *SourceFile {
	r := format.NewReader(fi)
	r.Each = d.opts.Decode
	sum := sha256.Sum256(fi.SchemaIPC)
	f := &SourceFile{Info: info, Index: fi, reader: r, schemaTag: hex.EncodeToString(sum[:8])}
	var row int64
	for _, seg := range fi.Segments {
		f.segStart = append(f.segStart, row)
		row += seg.Rows
	}
	return f
}

// unifyText gives text files (all CSV, or all JSON Lines, with inferred
// schemas) the schema inference over all of them gives
// (format.UnifyText): each file's own is what its values allowed, and one
// shard of integers beside shards of decimals, or an empty column in one
// shard, must not make the dataset a mismatch. The files are decoded with
// the unified schema; their indexes on disk keep their own.
func (d *Dataset) unifyText(files []*SourceFile) error {
	if d.opts.Format.Schema != nil || len(files) < 2 {
		return nil
	}
	idx := make([]*format.File, len(files))
	names := make([]string, len(files))
	for i, f := range files {
		idx[i], names[i] = f.Index, f.Info.Key
	}
	schema, err := format.UnifyText(idx, names)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSchemaMismatch, err)
	}
	if schema == nil {
		return nil
	}
	enc := format.EncodeSchema(schema)
	for i, f := range files {
		if !bytes.Equal(f.Index.SchemaIPC, enc) {
			fi := *f.Index
			fi.SchemaIPC = enc
			files[i] = d.sourceFile(f.Info, &fi)
		}
	}
	return nil
}

func (d *Dataset) fileKey(info source.Info) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\nseg=%d\n", d.key, d.loc.StoreID, info.Key, info.Identity(), d.opts.Format.SegmentRows)
	if d.opts.Format.Schema != nil {
		h.Write(format.EncodeSchema(d.opts.Format.Schema))
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// computeSizes encodes every batch once to learn its exact size. A batch
// that cannot be built (corrupt source bytes) is recorded as an error for
// that batch alone; the others are served.
func (s *Snapshot) computeSizes(ctx context.Context) error {
	n := s.NumBatches()
	s.sizes = make([]int64, n)
	workers := min(s.ds.opts.Workers, max(n, 1))
	var done, next atomic.Int64
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for w := 0; w < workers; w++ {
		// Workers take batches in order, so the batches of one source
		// segment are encoded close together: the segment is decoded (and
		// on S3 fetched) once, not again by a worker whose share of the
		// batches starts in the middle of it after it left the cache.
		g.Go(func() error {
			for k := int(next.Add(1) - 1); k < n; k = int(next.Add(1) - 1) {
				if err := gctx.Err(); err != nil {
					return err
				}
				var c counter
				if err := s.encodeRecovering(gctx, k, &c); err != nil {
					if errors.Is(err, context.Canceled) {
						return err
					}
					mu.Lock()
					if s.batchErrs == nil {
						s.batchErrs = map[int]error{}
					}
					s.batchErrs[k] = err
					mu.Unlock()
					s.ds.log.Error("batch cannot be built", "batch", k, "err", err)
				}
				s.sizes[k] = c.n
				s.ds.progress.batchesDone.Add(1)
				if p := s.ds.opts.Progress; p != nil {
					p(s.ds.Name, done.Add(1), int64(n))
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// encodeRecovering is encode with a panic (a decoder or Arrow on input it
// did not expect) turned into that batch's error: the index pass runs on
// goroutines nothing else guards, and a panic there would end the daemon.
func (s *Snapshot) encodeRecovering(ctx context.Context, k int, w io.Writer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("batch %d: %w: panic while encoding: %v", k, format.ErrCorrupt, p)
		}
	}()
	return s.encode(ctx, k, w)
}

// BatchErrors returns the batches that could not be built, with reasons.
func (s *Snapshot) BatchErrors() map[int]error { return s.batchErrs }

func (d *Dataset) stateFile(kind, key string) string {
	if d.opts.StateDir == "" {
		return ""
	}
	return filepath.Join(d.opts.StateDir, "index", kind, key+".json")
}

func (d *Dataset) loadJSON(kind, key string, v any) bool {
	p := d.stateFile(kind, key)
	if p == "" {
		return false
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		d.log.Warn("ignoring unreadable index file", "path", p, "err", err)
		return false
	}
	return true
}

// saveJSON writes atomically (temp file + rename) so a crash never leaves
// a torn index behind.
func (d *Dataset) saveJSON(kind, key string, v any) {
	p := d.stateFile(kind, key)
	if p == "" {
		return
	}
	b, err := json.Marshal(v)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(p), 0o755)
	}
	if err == nil {
		tmp := p + fmt.Sprintf(".tmp%d", time.Now().UnixNano())
		if err = os.WriteFile(tmp, b, 0o644); err == nil {
			err = os.Rename(tmp, p)
		}
	}
	if err != nil {
		d.log.Warn("cannot persist index", "path", p, "err", err)
	}
}

func (d *Dataset) loadFileIndex(key string) (*format.File, bool) {
	var f format.File
	if !d.loadJSON("files", key, &f) {
		return nil, false
	}
	return &f, true
}

func (d *Dataset) saveFileIndex(key string, f *format.File) { d.saveJSON("files", key, f) }

func (d *Dataset) loadSizes(id string) (persisted, bool) {
	var p persisted
	ok := d.loadJSON("batches", id, &p)
	return p, ok && p.Version == d.key && p.ID == id
}

func (d *Dataset) saveSizes(p persisted) { d.saveJSON("batches", p.ID, p) }
