package format

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/zenithfs/zenithfs/internal/sampledata"
)

// memObject is an in-memory Object.
type memObject struct{ b []byte }

func (m *memObject) Size() int64 { return int64(len(m.b)) }
func (m *memObject) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(m.b).ReadAt(p, off)
}
func (m *memObject) ReadRanges(offs []int64, bufs [][]byte) error {
	for i := range offs {
		if _, err := m.ReadAt(bufs[i], offs[i]); err != nil {
			return err
		}
	}
	return nil
}

func TestDetect(t *testing.T) {
	cases := []struct {
		name string
		head string
		want Kind
		err  error
	}{
		{"a.parquet", "PAR1xxxx", Parquet, nil},
		{"a.bin", "PAR1xxxx", Parquet, nil},
		{"a.arrow", "ARROW1\x00\x00", IPCFile, nil},
		{"a.arrow", "\xff\xff\xff\xff\x10\x00\x00\x00", IPCStream, nil},
		{"a.arrows", "\xff\xff\xff\xff\x10\x00\x00\x00", IPCStream, nil},
		{"a.csv", "id,x\n1,2", CSV, nil},
		{"a.ndjson", "{}", JSONL, nil},
		{"a.parquet", "not parq", "", ErrCorrupt},
		{"a.txt", "hello", "", ErrUnsupported},
	}
	for _, c := range cases {
		got, err := Detect(c.name, []byte(c.head))
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("Detect(%s, %q) = %s, %v; want %s, %v", c.name, c.head, got, err, c.want, c.err)
		}
	}
}

func TestCSVInference(t *testing.T) {
	csv := "i,f,b,s,empty,mixed\n1,1.5,true,x,,1\n-2,2,false,\"y, with comma\",,a\n,3e2,,z,,2\n"
	f, err := Index(context.Background(), "t.csv", &memObject{[]byte(csv)}, Options{SegmentRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := f.Schema()
	want := []arrow.DataType{arrow.PrimitiveTypes.Int64, arrow.PrimitiveTypes.Float64, arrow.FixedWidthTypes.Boolean,
		arrow.BinaryTypes.String, arrow.BinaryTypes.String, arrow.BinaryTypes.String}
	for i, w := range want {
		if !arrow.TypeEqual(s.Field(i).Type, w) {
			t.Errorf("column %s: %s, want %s", s.Field(i).Name, s.Field(i).Type, w)
		}
	}
	if f.Rows != 3 || len(f.Segments) != 2 {
		t.Fatalf("rows %d segments %d", f.Rows, len(f.Segments))
	}
	r := NewReader(f)
	rec, err := r.ReadSegment(context.Background(), &memObject{[]byte(csv)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if rec.NumRows() != 1 || !rec.Column(0).IsNull(0) || rec.Column(1).(*array.Float64).Value(0) != 300 {
		t.Fatalf("segment 1: %v", rec)
	}
}

func TestJSONLInferenceAndConflicts(t *testing.T) {
	good := `{"a":1,"b":{"c":"x","d":[1,2]},"e":null}
{"a":2.5,"b":{"c":null,"d":[]},"f":true}

{"b":{"d":[3]},"a":3}
`
	f, err := Index(context.Background(), "t.jsonl", &memObject{[]byte(good)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := f.Schema()
	if got := s.String(); !strings.Contains(got, "a: type=float64") || !strings.Contains(got, "d: list<item: int64") || !strings.Contains(got, "f: type=bool") {
		t.Fatalf("schema:\n%s", got)
	}
	if names := []string{s.Field(0).Name, s.Field(1).Name, s.Field(2).Name, s.Field(3).Name}; strings.Join(names, ",") != "a,b,e,f" {
		t.Fatalf("field order %v, want first-seen a,b,e,f", names)
	}
	rec, err := NewReader(f).ReadSegment(context.Background(), &memObject{[]byte(good)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rec.NumRows() != 3 || !rec.Column(3).IsNull(0) || rec.Column(0).(*array.Float64).Value(2) != 3 {
		t.Fatalf("decoded %v", rec)
	}
	bad := "{\"a\":1}\n{\"a\":\"x\"}\n"
	_, err = Index(context.Background(), "t.jsonl", &memObject{[]byte(bad)}, Options{})
	if err == nil || !strings.Contains(err.Error(), "$.a") || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("conflicting kinds: %v", err)
	}
	if _, err := Index(context.Background(), "t.jsonl", &memObject{[]byte("{\"a\":1}\n{oops\n")}, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("broken line: %v", err)
	}
}

func TestCorruptInputsAreErrorsNotPanics(t *testing.T) {
	inputs := map[string]string{
		"x.parquet": "PAR1" + strings.Repeat("\x00", 40) + "PAR1",
		"x.arrow":   "ARROW1\x00\x00garbage",
		"x.arrows":  "\xff\xff\xff\xff\xff\xff\x00\x00junk",
		"x.csv":     "a,b\n1,\"unterminated\n",
	}
	for name, body := range inputs {
		if _, err := Index(context.Background(), name, &memObject{[]byte(body)}, Options{}); err == nil {
			t.Errorf("%s: corrupt input indexed without error", name)
		}
	}
}

// panicky is an object whose reads past its head panic, as a decoder
// does on some malformed inputs.
type panicky struct{ memObject }

func (p *panicky) ReadAt(b []byte, off int64) (int, error) {
	if off > 0 {
		panic("index out of range [7] with length 3")
	}
	return p.memObject.ReadAt(b, off)
}

// A panic while indexing a file is that file's ErrCorrupt, naming it,
// not a crash of the daemon.
func TestIndexPanicIsCorrupt(t *testing.T) {
	obj := &panicky{memObject{append([]byte("PAR1"), make([]byte, 100)...)}}
	_, err := Index(context.Background(), "x/bad.parquet", obj, Options{})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "x/bad.parquet") || !strings.Contains(err.Error(), "panic") {
		t.Fatalf("Index of a file whose decoder panics: %v", err)
	}
}

// A Parquet row group's extent, known from the kept footer without a read,
// covers exactly the bytes its decode reads: consecutive row groups tile
// the file between the magic and the footer, and reading a row group
// touches nothing outside its extent.
func TestParquetSegmentExtent(t *testing.T) {
	path := t.TempDir() + "/a.parquet"
	if err := sampledata.WriteParquet(path, 5000, 1000); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Index(context.Background(), "a.parquet", &memObject{b}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Footer) == 0 || len(f.Segments) != 5 {
		t.Fatalf("index kept a footer of %d bytes, %d segments", len(f.Footer), len(f.Segments))
	}
	r := NewReader(f)
	obj := &rangeSpy{memObject: memObject{b}}
	next := int64(4) // after "PAR1"
	for i := range f.Segments {
		off, n, ok := r.SegmentExtent(obj, i)
		if !ok || off != next || n <= 0 {
			t.Fatalf("row group %d: extent [%d,+%d) ok=%v, want it to start at %d", i, off, n, ok, next)
		}
		next = off + n
		obj.lo, obj.hi = -1, -1
		if _, err := r.ReadSegment(context.Background(), obj, i); err != nil {
			t.Fatal(err)
		}
		if obj.lo != off || obj.hi != off+n {
			t.Fatalf("row group %d read [%d,%d), extent [%d,%d)", i, obj.lo, obj.hi, off, off+n)
		}
	}
	if _, _, ok := r.SegmentExtent(obj, 5); ok {
		t.Fatal("an extent for a row group past the last")
	}
}

// rangeSpy records the lowest and highest byte its reads touched.
type rangeSpy struct {
	memObject
	lo, hi int64
}

func (s *rangeSpy) note(off int64, n int) {
	if s.lo < 0 || off < s.lo {
		s.lo = off
	}
	s.hi = max(s.hi, off+int64(n))
}

func (s *rangeSpy) ReadAt(p []byte, off int64) (int, error) {
	s.note(off, len(p))
	return s.memObject.ReadAt(p, off)
}

func (s *rangeSpy) ReadRanges(offs []int64, bufs [][]byte) error {
	for i := range offs {
		s.note(offs[i], len(bufs[i]))
	}
	return s.memObject.ReadRanges(offs, bufs)
}

// An Arrow IPC source whose buffers are out of range (a string offset past
// its data) is corrupt when read, not passed on to the batch files.
func TestIPCSourceWithBadOffsetsIsCorrupt(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{{Name: "s", Type: arrow.BinaryTypes.String}}, nil)
	offsets := memory.NewBufferBytes(arrow.Int32Traits.CastToBytes([]int32{0, 0x7ffffff0, 3}))
	values := memory.NewBufferBytes([]byte("abc"))
	data := array.NewData(arrow.BinaryTypes.String, 2, []*memory.Buffer{nil, offsets, values}, nil, 0, 0)
	col := array.NewStringData(data)
	rec := array.NewRecordBatch(schema, []arrow.Array{col}, 2)
	var buf bytes.Buffer
	w, err := ipc.NewFileWriter(&buf, ipc.WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	obj := &memObject{buf.Bytes()}
	f, err := Index(context.Background(), "bad.arrow", obj, Options{})
	if err != nil {
		t.Fatalf("index: %v", err)
	}
	if _, err := NewReader(f).ReadSegment(context.Background(), obj, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of a record batch with a string offset past its data: %v, want ErrCorrupt", err)
	}
}

// An empty CSV or JSON Lines file is a file of no rows, with or without a
// configured schema.
func TestEmptyTextFilesHaveNoRows(t *testing.T) {
	s := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true}}, nil)
	for _, name := range []string{"e.csv", "e.jsonl"} {
		for _, opts := range []Options{{}, {Schema: s}} {
			f, err := Index(context.Background(), name, &memObject{[]byte{}}, opts)
			if err != nil || f.Rows != 0 {
				t.Errorf("%s (schema given: %v): %v", name, opts.Schema != nil, err)
			}
		}
	}
}
