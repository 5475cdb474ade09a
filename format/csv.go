package format

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	arrowcsv "github.com/apache/arrow-go/v18/arrow/csv"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// CSV files have a header line. Their schema is inferred over every row of
// the file — int64, then float64, then bool, then string, whichever is the
// narrowest type every non-empty value parses as (with the same strconv
// functions the Arrow CSV reader uses) — so it is identical for all batches.
// The empty string is null in every column.

type csvColumn struct {
	name                      string
	canInt, canFloat, canBool bool
	seen                      bool
}

func (c *csvColumn) observe(v string) {
	if v == "" {
		return
	}
	c.seen = true
	if c.canInt {
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			c.canInt = false
		}
	}
	if c.canFloat {
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			c.canFloat = false
		}
	}
	if c.canBool {
		if _, err := strconv.ParseBool(v); err != nil {
			c.canBool = false
		}
	}
}

func (c *csvColumn) typ() arrow.DataType {
	switch {
	case !c.seen:
		return arrow.BinaryTypes.String
	case c.canInt:
		return arrow.PrimitiveTypes.Int64
	case c.canFloat:
		return arrow.PrimitiveTypes.Float64
	case c.canBool:
		return arrow.FixedWidthTypes.Boolean
	}
	return arrow.BinaryTypes.String
}

func indexCSV(ctx context.Context, obj Object, opts Options) (*File, error) {
	r := csv.NewReader(bufio.NewReaderSize(section(obj), 1<<20))
	r.ReuseRecord = true
	header, err := r.Read()
	switch {
	case errors.Is(err, io.EOF):
		header = nil // an empty file: no columns, no rows (it gives no batch)
	case err != nil:
		return nil, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	cols := make([]*csvColumn, len(header))
	for i, h := range header {
		cols[i] = &csvColumn{name: h, canInt: true, canFloat: true, canBool: true}
	}
	f := &File{Header: true}
	segRows := int64(opts.segmentRows())
	start := r.InputOffset()
	var cur Segment
	cur.Off = start
	for line := 2; ; line++ {
		if line%65536 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if opts.Schema == nil {
			for i, v := range rec {
				cols[i].observe(v)
			}
		}
		cur.Rows++
		if cur.Rows == segRows {
			cur.Len = r.InputOffset() - cur.Off
			f.Segments = append(f.Segments, cur)
			f.Rows += cur.Rows
			cur = Segment{Off: r.InputOffset()}
		}
	}
	if cur.Rows > 0 {
		cur.Len = r.InputOffset() - cur.Off
		f.Segments = append(f.Segments, cur)
		f.Rows += cur.Rows
	}
	schema := opts.Schema
	if schema == nil {
		fields := make([]arrow.Field, len(cols))
		for i, c := range cols {
			fields[i] = arrow.Field{Name: c.name, Type: c.typ(), Nullable: true}
		}
		schema = arrow.NewSchema(fields, nil)
		f.Inferred = csvInferred(cols)
	} else if header != nil && schema.NumFields() != len(header) {
		return nil, fmt.Errorf("configured schema has %d columns, the header %d", schema.NumFields(), len(header))
	}
	f.SchemaIPC = EncodeSchema(schema)
	return f, nil
}

func readCSV(obj Object, f *File, i int, schema *arrow.Schema) (arrow.RecordBatch, error) {
	return readText(obj, f.Segments[i], "csv", func(r io.Reader) recordReader {
		return arrowcsv.NewReader(r, schema, arrowcsv.WithHeader(false), arrowcsv.WithChunk(-1),
			arrowcsv.WithNullReader(true, ""), arrowcsv.WithAllocator(memory.DefaultAllocator))
	})
}

// recordReader is what the Arrow CSV and JSON readers have in common.
type recordReader interface {
	Next() bool
	Err() error
	RecordBatch() arrow.RecordBatch
	Release()
}

// readText reads a text segment's bytes and decodes them as one record
// with the reader open makes.
func readText(obj Object, seg Segment, what string, open func(io.Reader) recordReader) (rec arrow.RecordBatch, err error) {
	buf := make([]byte, seg.Len)
	if err := obj.ReadRanges([]int64{seg.Off}, [][]byte{buf}); err != nil {
		return nil, err
	}
	defer func() {
		// Arrow's text readers panic on some malformed input; a corrupt
		// file must be an error, not a crash.
		if p := recover(); p != nil {
			rec, err = nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, what, p)
		}
	}()
	r := open(bytes.NewReader(buf))
	defer r.Release()
	if !r.Next() {
		err := r.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
	}
	rec = r.RecordBatch()
	rec.Retain()
	return rec, nil
}
