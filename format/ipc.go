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
	var dicts streamDicts
	if hasDictionary(r.Schema()) {
		if dicts, err = scanStreamDicts(obj); err != nil {
			return nil, err
		}
		f.Prefix = dicts.prefix
	}
	start := f.Prefix
	for r.Next() {
		rows := r.RecordBatch().NumRows()
		f.Segments = append(f.Segments, Segment{Rows: rows, Off: start, Len: cr.n - start})
		f.Rows += rows
		start = cr.n
	}
	if err := r.Err(); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: message at byte %d: %v", ErrCorrupt, start, err)
	}
	if dicts.later && len(f.Segments) > 1 {
		// Dictionaries sent between record batches (deltas, replacements)
		// apply to every batch after them: the stream is decoded whole.
		last := f.Segments[len(f.Segments)-1]
		f.Segments = []Segment{{Rows: f.Rows, Off: f.Prefix, Len: last.Off + last.Len - f.Prefix}}
	}
	return f, nil
}

// streamDicts is where a stream's dictionaries are: prefix is the bytes
// of the schema and the dictionary batches sent before the first record
// batch (what every record batch is decoded with); later is whether more
// dictionary batches come after it.
type streamDicts struct {
	prefix int64
	later  bool
}

// scanStreamDicts reads a stream's messages for where its dictionary
// batches are.
func scanStreamDicts(obj Object) (streamDicts, error) {
	cr := &countingReader{r: section(obj)}
	mr := ipc.NewMessageReader(cr, ipc.WithAllocator(memory.DefaultAllocator))
	defer mr.Release()
	var d streamDicts
	batch := false
	for {
		end := cr.n
		msg, err := mr.Message()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return d, fmt.Errorf("%w: message at byte %d: %v", ErrCorrupt, end, err)
		}
		switch msg.Type() {
		case ipc.MessageRecordBatch:
			if !batch {
				d.prefix = end
			}
			batch = true
		case ipc.MessageDictionaryBatch:
			d.later = d.later || batch
		}
	}
	if !batch {
		d.prefix = cr.n
	}
	return d, nil
}

// hasDictionary reports whether any field of s, at any depth, is
// dictionary-encoded.
func hasDictionary(s *arrow.Schema) bool {
	var walk func(t arrow.DataType) bool
	walk = func(t arrow.DataType) bool {
		switch t := t.(type) {
		case *arrow.DictionaryType:
			return true
		case arrow.NestedType:
			for _, f := range t.Fields() {
				if walk(f.Type) {
					return true
				}
			}
		}
		return false
	}
	for _, f := range s.Fields() {
		if walk(f.Type) {
			return true
		}
	}
	return false
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
	// One record batch, or several where the stream is decoded whole.
	var recs []arrow.RecordBatch
	defer func() {
		for _, rec := range recs {
			rec.Release()
		}
	}()
	var rows int64
	for (len(recs) == 0 || rows < seg.Rows) && r.Next() {
		rec := r.RecordBatch()
		rec.Retain()
		recs = append(recs, rec)
		rows += rec.NumRows()
	}
	if rows < seg.Rows || len(recs) == 0 {
		err := r.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: record batch %d: %v", ErrCorrupt, i, err)
	}
	return ConcatRecords(r.Schema(), recs)
}
