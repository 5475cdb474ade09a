package format

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

func indexIPCFile(obj Object) (*File, error) {
	r, err := ipc.NewFileReader(section(obj), ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	defer r.Close()
	f := &File{SchemaIPC: EncodeSchema(r.Schema())}
	for i := 0; i < r.NumRecords(); i++ {
		rec, err := r.RecordBatch(i)
		if err != nil {
			return nil, fmt.Errorf("%w: record batch %d: %v", ErrCorrupt, i, err)
		}
		f.Segments = append(f.Segments, Segment{Rows: rec.NumRows()})
		f.Rows += rec.NumRows()
	}
	return f, nil
}

func readIPCFile(obj Object, i int) (arrow.RecordBatch, error) {
	r, err := ipc.NewFileReader(section(obj), ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	defer r.Close()
	rec, err := r.RecordBatch(i)
	if err != nil {
		return nil, fmt.Errorf("%w: record batch %d: %v", ErrCorrupt, i, err)
	}
	rec.Retain()
	return rec, nil
}

// countingReader counts the bytes read through it. The IPC stream reader
// reads messages with io.ReadFull and no read-ahead, so after each message
// the count is that message's end offset.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func indexIPCStream(obj Object) (*File, error) {
	cr := &countingReader{r: section(obj)}
	r, err := ipc.NewReader(cr, ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	defer r.Release()
	f := &File{SchemaIPC: EncodeSchema(r.Schema()), Prefix: cr.n}
	start := cr.n
	for r.Next() {
		rows := r.RecordBatch().NumRows()
		f.Segments = append(f.Segments, Segment{Rows: rows, Off: start, Len: cr.n - start})
		f.Rows += rows
		start = cr.n
	}
	if err := r.Err(); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: message at byte %d: %v", ErrCorrupt, start, err)
	}
	return f, nil
}

// readIPCStream decodes one record batch message of a stream: the schema
// message (the first Prefix bytes) followed by the batch's own bytes form a
// valid stream on their own.
func readIPCStream(obj Object, f *File, i int) (arrow.RecordBatch, error) {
	seg := f.Segments[i]
	offs := []int64{0, seg.Off}
	bufs := [][]byte{make([]byte, f.Prefix), make([]byte, seg.Len)}
	if err := obj.ReadRanges(offs, bufs); err != nil {
		return nil, err
	}
	r, err := ipc.NewReader(io.MultiReader(bytes.NewReader(bufs[0]), bytes.NewReader(bufs[1])), ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	defer r.Release()
	if !r.Next() {
		err := r.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: record batch %d: %v", ErrCorrupt, i, err)
	}
	rec := r.RecordBatch()
	rec.Retain()
	return rec, nil
}
