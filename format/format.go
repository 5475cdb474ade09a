// Package format turns source files — Parquet, Arrow IPC (file and stream),
// CSV with a header, JSON Lines — into Arrow record batches.
//
// Each file is indexed once into a File: its kind, schema, row count and a
// list of segments. A segment is the smallest piece of the file that can be
// decoded on its own: a Parquet row group, an IPC record batch, or a block of
// lines of a text file (whose byte range the index records). Reading rows
// [a, b) of a file therefore decodes only the segments that overlap them, and
// reads only their bytes: the byte ranges a segment needs are handed to the
// Object's ReadRanges in one call, so a local store can submit them as one
// io_uring batch and an S3 store as parallel ranged GETs.
//
// The package does no I/O of its own: everything goes through Object. It
// knows nothing of stores, caches or FUSE.
package format

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Kind is a source file format.
type Kind string

// The supported kinds.
const (
	Parquet   Kind = "parquet"
	IPCFile   Kind = "arrow-file"
	IPCStream Kind = "arrow-stream"
	CSV       Kind = "csv"
	JSONL     Kind = "jsonl"
)

// ErrUnsupported is wrapped when a file is of no supported format.
var ErrUnsupported = errors.New("unsupported file format")

// ErrCorrupt is wrapped when a file cannot be decoded.
var ErrCorrupt = errors.New("corrupt or truncated file")

// Object is one source file, as the format readers see it.
type Object interface {
	io.ReaderAt
	// Size is the object's size in bytes.
	Size() int64
	// ReadRanges reads several byte ranges at once: bufs[i] gets
	// len(bufs[i]) bytes at offs[i].
	ReadRanges(offs []int64, bufs [][]byte) error
}

// RangeViewer is an Object that may hold byte ranges in memory already (a
// coalesced read's span): ViewRanges returns each range's bytes, views of
// that memory where it can (read-only: shared with other readers), so the
// caller skips a copy. ok is false, and nothing is read, when the object
// cannot serve them this way; the caller then uses ReadRanges.
type RangeViewer interface {
	ViewRanges(offs, lens []int64) (views [][]byte, ok bool, err error)
}

// readRanges reads the ranges [offs[i], offs[i]+lens[i]) of obj: views
// where obj is a RangeViewer that holds them, fresh buffers otherwise.
func readRanges(obj Object, offs, lens []int64) ([][]byte, error) {
	if v, ok := obj.(RangeViewer); ok {
		if views, ok, err := v.ViewRanges(offs, lens); ok {
			return views, err
		}
	}
	bufs := make([][]byte, len(lens))
	for i, n := range lens {
		bufs[i] = make([]byte, n)
	}
	return bufs, obj.ReadRanges(offs, bufs)
}

// Supported reports whether a file name has a supported extension.
func Supported(name string) bool {
	_, ok := kindByExt(name)
	return ok
}

func kindByExt(name string) (Kind, bool) {
	ext := strings.ToLower(path.Ext(name))
	switch ext {
	case ".parquet", ".pq":
		return Parquet, true
	case ".arrow", ".feather", ".ipc":
		return IPCFile, true // refined by magic bytes
	case ".arrows":
		return IPCStream, true
	case ".csv":
		return CSV, true
	case ".jsonl", ".ndjson":
		return JSONL, true
	}
	return "", false
}

var (
	parquetMagic = []byte("PAR1")
	arrowMagic   = []byte("ARROW1")
)

// Detect decides a file's kind from its name and first bytes. Magic bytes
// win over the extension for the binary formats (an .arrow file may hold the
// stream format).
func Detect(name string, head []byte) (Kind, error) {
	switch {
	case bytes.HasPrefix(head, parquetMagic):
		return Parquet, nil
	case bytes.HasPrefix(head, arrowMagic):
		return IPCFile, nil
	}
	k, ok := kindByExt(name)
	if !ok {
		return "", fmt.Errorf("%s: %w (want .parquet, .arrow, .arrows, .csv, .jsonl)", name, ErrUnsupported)
	}
	switch k {
	case Parquet:
		return "", fmt.Errorf("%s: %w: no PAR1 magic", name, ErrCorrupt)
	case IPCFile, IPCStream:
		// An IPC stream starts with a continuation marker (0xFFFFFFFF) or,
		// in the legacy format, a positive metadata length.
		if len(head) >= 4 {
			return IPCStream, nil
		}
		return "", fmt.Errorf("%s: %w: too short for Arrow IPC", name, ErrCorrupt)
	}
	return k, nil
}

// Segment is an independently decodable part of a file.
type Segment struct {
	Rows int64 `json:"rows"`
	Off  int64 `json:"off,omitempty"` // byte range, for text and stream segments
	Len  int64 `json:"len,omitempty"`
}

// File is the index of one source file.
type File struct {
	Kind     Kind      `json:"kind"`
	Rows     int64     `json:"rows"`
	Segments []Segment `json:"segments"`
	// SchemaIPC is the schema as an Arrow IPC schema message; see Schema.
	SchemaIPC []byte `json:"schema"`
	// Prefix is, for IPC streams, the byte length of the schema message
	// that must precede any record batch message when decoding.
	Prefix int64 `json:"prefix,omitempty"`
	// TextOptions used to index the file (CSV, JSONL).
	Header bool `json:"header,omitempty"`
	// Footer is a Parquet file's serialized metadata (when at most
	// maxKeptFooter bytes), kept so that reading a row group after a
	// restart needs no round trips for the footer (two on S3).
	Footer []byte `json:"footer,omitempty"`
	// Inferred is what schema inference saw in a text file (when no
	// schema was configured); see UnifyText.
	Inferred *Inferred `json:"inferred,omitempty"`
}

// Options tune indexing.
type Options struct {
	// SegmentRows is the number of rows per segment of a text file.
	SegmentRows int
	// Schema, when set, is used for CSV and JSON Lines instead of inference.
	Schema *arrow.Schema
}

func (o Options) segmentRows() int {
	if o.SegmentRows > 0 {
		return o.SegmentRows
	}
	return 16384
}

// Index reads what it needs of obj to build its File index. A decoder
// that panics on malformed input (arrow-go parsing a corrupt footer) makes
// that file's error, naming it; the daemon goes on.
func Index(ctx context.Context, name string, obj Object, opts Options) (f *File, err error) {
	defer func() {
		if p := recover(); p != nil {
			f, err = nil, fmt.Errorf("index %s: %w: decoder panic: %v", name, ErrCorrupt, p)
		}
	}()
	head := make([]byte, 8)
	n, err := obj.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("index %s: read head: %w", name, err)
	}
	kind, err := Detect(name, head[:n])
	if err != nil {
		return nil, err
	}
	switch kind {
	case Parquet:
		f, err = indexParquet(obj)
	case IPCFile:
		f, err = indexIPCFile(obj)
	case IPCStream:
		f, err = indexIPCStream(obj)
	case CSV:
		f, err = indexCSV(ctx, obj, opts)
	case JSONL:
		f, err = indexJSONL(ctx, obj, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("index %s (%s): %w", name, kind, err)
	}
	f.Kind = kind
	return f, nil
}

// Schema decodes the file's schema.
func (f *File) Schema() (*arrow.Schema, error) { return DecodeSchema(f.SchemaIPC) }

// ReadSegment decodes segment i of the file into one record batch with the
// file's schema. r holds per-file decoding state that may be reused between
// calls (e.g. parsed Parquet footers); pass the same *Reader for one file.
// SegmentExtent is the byte range of the object that segment i is read
// from, when the index knows it without a read: a Parquet row group's
// column chunks (from the footer the index kept), a text or stream
// segment's range. obj is not read.
func (r *Reader) SegmentExtent(obj Object, i int) (off, n int64, ok bool) {
	f := r.File
	if i < 0 || i >= len(f.Segments) {
		return 0, 0, false
	}
	if f.Kind == Parquet {
		return r.parquetExtent(obj, i)
	}
	if seg := f.Segments[i]; seg.Len > 0 {
		return seg.Off, seg.Len, true
	}
	return 0, 0, false
}

// validateFull is array.ValidateRecordFull, whose checks can themselves
// go out of bounds on bad offsets (a panic is the verdict too).
func validateFull(rec arrow.RecordBatch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid buffers: %v", r)
		}
	}()
	return array.ValidateRecordFull(rec)
}

func (r *Reader) ReadSegment(ctx context.Context, obj Object, i int) (arrow.RecordBatch, error) {
	f := r.File
	if i < 0 || i >= len(f.Segments) {
		return nil, fmt.Errorf("segment %d out of range [0,%d)", i, len(f.Segments))
	}
	schema, err := r.schema()
	if err != nil {
		return nil, err
	}
	var rec arrow.RecordBatch
	switch f.Kind {
	case Parquet:
		rec, err = r.readParquet(ctx, obj, i)
	case IPCFile:
		rec, err = readIPCFile(obj, i)
	case IPCStream:
		rec, err = readIPCStream(obj, f, i)
	case CSV:
		rec, err = readCSV(obj, f, i, schema)
	case JSONL:
		rec, err = readJSONL(obj, f, i, schema)
	default:
		err = fmt.Errorf("%w: %q", ErrUnsupported, f.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("segment %d: %w", i, err)
	}
	if f.Kind == IPCFile || f.Kind == IPCStream {
		// An IPC source's buffers are taken as they are: offsets or
		// dictionary indices out of range would reach the batch files
		// (and crash their readers) unless checked here.
		if err := validateFull(rec); err != nil {
			rec.Release()
			return nil, fmt.Errorf("segment %d: %w: %v", i, ErrCorrupt, err)
		}
	}
	if rec.NumRows() != f.Segments[i].Rows {
		return nil, fmt.Errorf("segment %d: %w: decoded %d rows, index says %d", i, ErrCorrupt, rec.NumRows(), f.Segments[i].Rows)
	}
	if !rec.Schema().Equal(schema) {
		return nil, fmt.Errorf("segment %d: %w: schema %s differs from the file's %s", i, ErrCorrupt, rec.Schema(), schema)
	}
	return rec, nil
}

// Reader decodes segments of one indexed file. It is safe for concurrent use.
type Reader struct {
	File *File
	// Each runs n independent decoding tasks (a Parquet row group's
	// columns), perhaps in parallel, and returns their errors joined; nil
	// runs them one after another in the caller.
	Each func(n int, task func(i int) error) error
	pq   parquetState
	sch  schemaState
}

// NewReader returns a Reader for f.
func NewReader(f *File) *Reader { return &Reader{File: f} }

// EncodeSchema serialises a schema as an Arrow IPC schema message.
func EncodeSchema(s *arrow.Schema) []byte {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(s))
	_ = w.Close() // writes the schema message and EOS into a bytes.Buffer: cannot fail
	return buf.Bytes()
}

// DecodeSchema parses EncodeSchema's output.
func DecodeSchema(b []byte) (*arrow.Schema, error) {
	r, err := ipc.NewReader(bytes.NewReader(b), ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return nil, fmt.Errorf("decode schema: %w", err)
	}
	defer r.Release()
	return r.Schema(), nil
}
