// Package source reads objects from object stores: local files (through
// io_uring where the kernel allows it, pread otherwise) and S3-compatible
// buckets (ranged GETs). Every store implements the one small Store
// interface; the storetest sub-package is the conformance suite they all pass.
//
// Keys are slash-separated paths relative to the store's root (a local
// directory, or a bucket prefix). An object's identity — size plus mtime for
// files, size plus ETag for S3 objects — is part of what Stat returns, so the
// layers above can key caches and indexes by it and notice changes.
package source

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNotExist is wrapped by every store for keys that do not exist.
var ErrNotExist = errors.New("object does not exist")

// Info describes one object.
type Info struct {
	Key     string    // path relative to the store root, slash-separated
	Size    int64     // bytes
	ModTime time.Time // last modification (local files; S3 LastModified)
	ETag    string    // S3 entity tag; empty for local files
}

// Identity is a string that changes whenever the object's content may have
// changed: size and ETag for S3, size and mtime (ns) for local files.
func (i Info) Identity() string {
	if i.ETag != "" {
		return fmt.Sprintf("%d:etag:%s", i.Size, i.ETag)
	}
	return fmt.Sprintf("%d:mtime:%d", i.Size, i.ModTime.UnixNano())
}

// Store is an object store. Implementations are safe for concurrent use.
type Store interface {
	// Stat returns the object's Info; missing keys wrap ErrNotExist.
	Stat(ctx context.Context, key string) (Info, error)
	// List returns every object whose key starts with prefix, recursively,
	// in lexicographic key order.
	List(ctx context.Context, prefix string) ([]Info, error)
	// ReadAt reads len(p) bytes at off, with io.ReaderAt semantics: n < len(p)
	// only with an error, io.EOF at the end of the object.
	ReadAt(ctx context.Context, key string, p []byte, off int64) (int, error)
}

// Range is one byte range to read into Buf (len(Buf) bytes at Off).
type Range struct {
	Off int64
	Buf []byte
	N   int   // bytes read, set by ReadRanges
	Err error // per-range error (io.EOF for a short read at the end)
}

// RangeReader is implemented by stores that read many ranges of one object at
// once better than one by one: the local store submits them as one io_uring
// batch, the S3 store issues parallel ranged GETs.
type RangeReader interface {
	// ReadRanges fills every range. It returns the first error, and sets
	// each range's N and Err.
	ReadRanges(ctx context.Context, key string, ranges []Range) error
}

// ReadRanges reads ranges through s's RangeReader when it has one, and one
// ReadAt at a time otherwise.
func ReadRanges(ctx context.Context, s Store, key string, ranges []Range) error {
	if rr, ok := s.(RangeReader); ok {
		return rr.ReadRanges(ctx, key, ranges)
	}
	var first error
	for i := range ranges {
		r := &ranges[i]
		r.N, r.Err = s.ReadAt(ctx, key, r.Buf, r.Off)
		if r.Err != nil && first == nil {
			first = fmt.Errorf("read %s at %d: %w", key, r.Off, r.Err)
		}
	}
	return first
}
