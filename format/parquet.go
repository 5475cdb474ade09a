package format

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// parquetState caches a file's parsed footer between segment reads.
type parquetState struct {
	mu sync.Mutex
	md *metadata.FileMetaData
}

type schemaState struct {
	once   sync.Once
	schema *arrow.Schema
	err    error
}

func (r *Reader) schema() (*arrow.Schema, error) {
	r.sch.once.Do(func() { r.sch.schema, r.sch.err = r.File.Schema() })
	return r.sch.schema, r.sch.err
}

func section(obj Object) *io.SectionReader { return io.NewSectionReader(obj, 0, obj.Size()) }

func openParquet(obj Object) (*file.Reader, error) {
	pf, err := file.NewParquetReader(section(obj))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return pf, nil
}

func parquetSchema(md *metadata.FileMetaData) (*arrow.Schema, error) {
	s, err := pqarrow.FromParquet(md.Schema, &pqarrow.ArrowReadProperties{}, md.KeyValueMetadata())
	if err != nil {
		return nil, fmt.Errorf("%w: arrow schema: %v", ErrCorrupt, err)
	}
	return s, nil
}

func indexParquet(obj Object) (*File, error) {
	pf, err := openParquet(obj)
	if err != nil {
		return nil, err
	}
	md := pf.MetaData()
	schema, err := parquetSchema(md)
	if err != nil {
		return nil, err
	}
	f := &File{SchemaIPC: EncodeSchema(schema), Footer: footerBytes(md)}
	for i := 0; i < md.NumRowGroups(); i++ {
		rows := md.RowGroup(i).NumRows()
		f.Segments = append(f.Segments, Segment{Rows: rows})
		f.Rows += rows
	}
	if f.Rows != md.NumRows {
		return nil, fmt.Errorf("%w: row groups hold %d rows, footer says %d", ErrCorrupt, f.Rows, md.NumRows)
	}
	return f, nil
}

// maxKeptFooter bounds the footers an index keeps.
const maxKeptFooter = 4 << 20

// footerBytes serializes md for the index, or nil when it is too large.
func footerBytes(md *metadata.FileMetaData) []byte {
	if md.Size() > maxKeptFooter {
		return nil
	}
	var buf bytes.Buffer
	if _, err := md.WriteTo(&buf, nil); err != nil || buf.Len() > maxKeptFooter {
		return nil
	}
	return buf.Bytes()
}

// parquetMeta returns the file's footer: from the index when it kept it,
// else read from the object once.
func (r *Reader) parquetMeta(obj Object) (*metadata.FileMetaData, error) {
	r.pq.mu.Lock()
	defer r.pq.mu.Unlock()
	if r.pq.md != nil {
		return r.pq.md, nil
	}
	if len(r.File.Footer) > 0 {
		md, err := metadata.NewFileMetaData(r.File.Footer, nil)
		if err == nil && md.NumRows == r.File.Rows && md.NumRowGroups() == len(r.File.Segments) {
			md.SetSourceFileSize(obj.Size()) // as reading it from the file would
			r.pq.md = md
			return md, nil
		}
	}
	pf, err := openParquet(obj)
	if err != nil {
		return nil, err
	}
	r.pq.md = pf.MetaData()
	return r.pq.md, nil
}

// parquetExtent is the byte range of row group rg's column chunks, from the
// footer when it is parsed or the index kept it (never read for this).
func (r *Reader) parquetExtent(obj Object, rg int) (off, n int64, ok bool) {
	r.pq.mu.Lock()
	md := r.pq.md
	r.pq.mu.Unlock()
	if md == nil {
		if len(r.File.Footer) == 0 {
			return 0, 0, false
		}
		var err error
		if md, err = r.parquetMeta(obj); err != nil {
			return 0, 0, false
		}
	}
	if rg >= md.NumRowGroups() {
		return 0, 0, false
	}
	rgmd := md.RowGroup(rg)
	lo, hi := int64(-1), int64(0)
	for c := 0; c < rgmd.NumColumns(); c++ {
		cc, err := rgmd.ColumnChunk(c)
		if err != nil {
			return 0, 0, false
		}
		start := chunkStart(cc)
		if lo < 0 || start < lo {
			lo = start
		}
		hi = max(hi, start+cc.TotalCompressedSize())
	}
	return lo, hi - lo, lo >= 0 && hi > lo
}

// chunkStart is where a column chunk's bytes begin: its dictionary page,
// if any, else its first data page.
func chunkStart(cc *metadata.ColumnChunkMetaData) int64 {
	start := cc.DataPageOffset()
	if cc.HasDictionaryPage() && cc.DictionaryPageOffset() > 0 && start > cc.DictionaryPageOffset() {
		start = cc.DictionaryPageOffset()
	}
	return start
}

// readParquet decodes one row group. The byte ranges of all its column
// chunks are read first, in one ReadRanges call (or viewed, readRanges);
// the decoder then reads from memory, falling back to the object for
// anything outside those ranges.
func (r *Reader) readParquet(ctx context.Context, obj Object, rg int) (arrow.RecordBatch, error) {
	md, err := r.parquetMeta(obj)
	if err != nil {
		return nil, err
	}
	if rg >= md.NumRowGroups() {
		return nil, fmt.Errorf("%w: row group %d of %d", ErrCorrupt, rg, md.NumRowGroups())
	}
	rgmd := md.RowGroup(rg)
	sp := &sparse{obj: obj}
	var offs, lens []int64
	for c := 0; c < rgmd.NumColumns(); c++ {
		cc, err := rgmd.ColumnChunk(c)
		if err != nil {
			return nil, fmt.Errorf("%w: column chunk %d: %v", ErrCorrupt, c, err)
		}
		start := chunkStart(cc)
		n := cc.TotalCompressedSize()
		if start < 0 || n < 0 || start+n > obj.Size() {
			return nil, fmt.Errorf("%w: column chunk %d at [%d,+%d) outside file of %d bytes", ErrCorrupt, c, start, n, obj.Size())
		}
		offs = append(offs, start)
		lens = append(lens, n)
	}
	// The decoder only reads the ranges (through sp), so they may be
	// views of a span the object holds.
	bufs, err := readRanges(obj, offs, lens)
	if err != nil {
		return nil, fmt.Errorf("read row group %d: %w", rg, err)
	}
	for i := range offs {
		sp.add(offs[i], bufs[i])
	}
	// A buffered stream reads each page from the ranges above into the
	// decoder's page buffer, where an unbuffered one would first copy the
	// whole column chunk into a fresh buffer (garbage the size of the row
	// group, per row group).
	props := parquet.NewReaderProperties(memory.DefaultAllocator)
	props.BufferedStreamEnabled = true
	props.BufferSize = streamBuffer
	pf, err := file.NewParquetReader(sp, file.WithMetadata(md), file.WithReadProps(props))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: rgmd.NumRows()}, memory.DefaultAllocator)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	schema, err := r.schema()
	if err != nil {
		return nil, err
	}
	if len(fr.Manifest.Fields) != schema.NumFields() {
		return nil, fmt.Errorf("%w: row group %d has %d fields, the file's schema %d", ErrCorrupt, rg, len(fr.Manifest.Fields), schema.NumFields())
	}
	// The columns are decoded as separate tasks (by r.Each, in parallel
	// where it can) rather than by pqarrow's parallel reader, whose
	// goroutine per column would compete with FUSE requests for the CPU.
	rows := rgmd.NumRows()
	cols := make([]arrow.Array, schema.NumFields())
	each := r.Each
	if each == nil {
		each = serially
	}
	err = each(len(cols), func(c int) error {
		ch, err := fr.RowGroup(rg).Column(c).Read(ctx)
		if err != nil {
			return fmt.Errorf("column %d: %w", c, err)
		}
		defer ch.Release()
		a, err := singleArray(ch)
		if err != nil {
			return fmt.Errorf("column %d: %w", c, err)
		}
		if int64(a.Len()) != rows || !arrow.TypeEqual(a.DataType(), schema.Field(c).Type) {
			return fmt.Errorf("column %d: decoded %d rows of %s, want %d of %s", c, a.Len(), a.DataType(), rows, schema.Field(c).Type)
		}
		cols[c] = a
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: row group %d: %w", ErrCorrupt, rg, err)
	}
	return array.NewRecordBatch(schema, cols, rows), nil
}

// streamBuffer is the buffer of the stream a column chunk's pages are read
// through (it grows for a larger page header).
const streamBuffer = 32 << 10

// serially runs n tasks one after another (Reader.Each when none is set).
func serially(n int, task func(i int) error) error {
	var errs []error
	for i := range n {
		errs = append(errs, task(i))
	}
	return errors.Join(errs...)
}

// singleArray is a column's chunks as one array.
func singleArray(ch *arrow.Chunked) (arrow.Array, error) {
	switch chunks := ch.Chunks(); len(chunks) {
	case 0:
		return array.MakeArrayOfNull(memory.DefaultAllocator, ch.DataType(), 0), nil
	case 1:
		chunks[0].Retain()
		return chunks[0], nil
	default:
		return array.Concatenate(chunks, memory.DefaultAllocator)
	}
}

// ConcatRecords joins records of one schema's columns into one record
// labelled with schema (files may differ in schema metadata).
func ConcatRecords(schema *arrow.Schema, recs []arrow.RecordBatch) (arrow.RecordBatch, error) {
	switch len(recs) {
	case 0:
		return array.NewRecordBatch(schema, emptyColumns(schema), 0), nil
	case 1:
		return array.NewRecordBatch(schema, recs[0].Columns(), recs[0].NumRows()), nil
	}
	cols := make([]arrow.Array, schema.NumFields())
	var rows int64
	for _, r := range recs {
		rows += r.NumRows()
	}
	for c := range cols {
		parts := make([]arrow.Array, len(recs))
		for i, r := range recs {
			parts[i] = r.Column(c)
		}
		a, err := array.Concatenate(parts, memory.DefaultAllocator)
		if err != nil {
			return nil, fmt.Errorf("concatenate column %s: %w", schema.Field(c).Name, err)
		}
		cols[c] = a
	}
	return array.NewRecordBatch(schema, cols, rows), nil
}

func emptyColumns(schema *arrow.Schema) []arrow.Array {
	cols := make([]arrow.Array, schema.NumFields())
	for i, f := range schema.Fields() {
		cols[i] = array.MakeArrayOfNull(memory.DefaultAllocator, f.Type, 0)
	}
	return cols
}

// sparse is an io.ReaderAt + io.Seeker over an object whose hot ranges were
// read ahead; reads outside them go to the object.
type sparse struct {
	obj    Object
	ranges []loaded // sorted by off
	pos    int64
}

type loaded struct {
	off int64
	b   []byte
}

func (s *sparse) add(off int64, b []byte) {
	s.ranges = append(s.ranges, loaded{off, b})
	sort.Slice(s.ranges, func(i, j int) bool { return s.ranges[i].off < s.ranges[j].off })
}

func (s *sparse) ReadAt(p []byte, off int64) (int, error) {
	// find the last range starting at or before off
	i := sort.Search(len(s.ranges), func(i int) bool { return s.ranges[i].off > off }) - 1
	if i >= 0 {
		r := s.ranges[i]
		if off+int64(len(p)) <= r.off+int64(len(r.b)) {
			return copy(p, r.b[off-r.off:]), nil
		}
	}
	return s.obj.ReadAt(p, off)
}

func (s *sparse) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		s.pos = offset
	case io.SeekCurrent:
		s.pos += offset
	case io.SeekEnd:
		s.pos = s.obj.Size() + offset
	}
	return s.pos, nil
}
