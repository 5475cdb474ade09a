package dataset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/zenithfs/zenithfs/format"
	"github.com/zenithfs/zenithfs/source"
)

// object adapts one key of a source.Store to format.Object, binding the
// context of the operation that reads it.
type object struct {
	ctx   context.Context
	store source.Store
	key   string
	size  int64
	etag  string // when set, reads require this ETag (S3 If-Match)
	// spans, when set, serves ReadRanges from coalesced reads (spans.go):
	// fetching the spans it needs when spanFetch, and only from spans
	// cached or in flight otherwise. spanObj names the object's version.
	spans     *spanCache
	spanObj   string
	spanFetch bool
	// next, when set (with spanFetch), returns the object after this one
	// in dataset order and where its first segment begins, when that
	// segment is read through spans too (nil otherwise): spans fetched
	// ahead go on into it.
	next func() (*object, int64)
	// dataEnd, when positive, is where the object's segments end (a
	// Parquet file's footer follows): spans stop there.
	dataEnd int64
	// changedErr is the first read error that said the object changed.
	// Decoders may flatten the errors of their reads (the Parquet footer's
	// ErrCorrupt keeps only the text), so explain re-attaches it.
	changedErr atomic.Pointer[error]
	// readErr is the first read that failed for a reason of the store's
	// (unreachable, cancelled, an I/O error), which a decoder would report
	// as a corrupt file; explain re-attaches it too.
	readErr atomic.Pointer[error]
}

func (o *object) readCtx() context.Context {
	if o.etag != "" {
		return source.WithExpectedETag(o.ctx, o.etag)
	}
	return o.ctx
}

// changed maps a store's "object changed under us" to ErrChanged, and so
// an indexed object that is gone: the dataset is checked again at once
// rather than failing its batches until the next periodic check.
func changed(err error) error {
	if (errors.Is(err, source.ErrObjectChanged) || errors.Is(err, source.ErrNotExist)) && !errors.Is(err, ErrChanged) {
		return fmt.Errorf("%w: %w", ErrChanged, err)
	}
	return err
}

// note maps err through changed and remembers a change.
func (o *object) note(err error) error {
	err = changed(err)
	if errors.Is(err, ErrChanged) {
		o.changedErr.CompareAndSwap(nil, &err)
	} else if err != nil && !errors.Is(err, io.EOF) {
		o.readErr.CompareAndSwap(nil, &err)
	}
	return err
}

// explain returns err, wrapping ErrChanged when one of o's reads saw the
// object change, or the first read error, when err (from a decoder) no
// longer says so.
func (o *object) explain(err error) error {
	if err == nil || errors.Is(err, ErrChanged) {
		return err
	}
	if p := o.changedErr.Load(); p != nil {
		return fmt.Errorf("%w (then: %v)", *p, err)
	}
	// A read that failed is the reason, not the corrupt file the decoder
	// took its missing bytes for.
	if p := o.readErr.Load(); p != nil && !errors.Is(err, *p) {
		return fmt.Errorf("%w (then: %v)", *p, err)
	}
	return err
}

// spanLimit is the end of the bytes spans may hold: the segments' end, or
// the object's.
func (o *object) spanLimit() int64 {
	if o.dataEnd > 0 {
		return min(o.dataEnd, o.size)
	}
	return o.size
}

var _ format.Object = (*object)(nil)

func (o *object) Size() int64 { return o.size }

func (o *object) ReadAt(p []byte, off int64) (int, error) {
	n, err := o.store.ReadAt(o.readCtx(), o.key, p, off)
	return n, o.note(err)
}

// ViewRanges implements format.RangeViewer: reads in dataset order of
// ranges in spans (spans.go) return views of the spans' bytes; where
// spans cannot serve them, they are read exactly, here (not by the
// caller's ReadRanges, which would try the spans again: a failed span
// would be fetched twice).
func (o *object) ViewRanges(offs, lens []int64) ([][]byte, bool, error) {
	if o.spans == nil {
		return nil, false, nil
	}
	if views, ok, err := o.spans.view(o, o.spanObj, offs, lens, o.spanFetch, nil); ok {
		return views, true, err
	}
	bufs := make([][]byte, len(lens))
	for i, n := range lens {
		bufs[i] = make([]byte, n)
	}
	return bufs, true, o.readExact(offs, bufs)
}

// ReadRanges reads every range in one call to the store (one io_uring batch
// locally, parallel ranged GETs on S3), or from spans. A short read is a
// truncated file.
func (o *object) ReadRanges(offs []int64, bufs [][]byte) error {
	if o.spans != nil {
		if ok, err := o.spans.read(o, o.spanObj, offs, bufs, o.spanFetch); ok {
			return err
		}
	}
	return o.readExact(offs, bufs)
}

// readExact is ReadRanges from the store.
func (o *object) readExact(offs []int64, bufs [][]byte) error {
	ranges := make([]source.Range, len(offs))
	for i := range offs {
		ranges[i] = source.Range{Off: offs[i], Buf: bufs[i]}
	}
	err := o.note(source.ReadRanges(o.readCtx(), o.store, o.key, ranges))
	for _, r := range ranges {
		if r.N < len(r.Buf) {
			if err == nil || errors.Is(err, io.EOF) {
				return fmt.Errorf("read %s at %d: %w: got %d of %d bytes", o.key, r.Off, format.ErrCorrupt, r.N, len(r.Buf))
			}
			return err
		}
	}
	return nil
}
