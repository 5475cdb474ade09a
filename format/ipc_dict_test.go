package format

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// dictStream writes an IPC stream of batches record batches of a
// dictionary-encoded string column and an int column; with replace, each
// batch has its own dictionary (a replacement or delta mid-stream).
func dictStream(t *testing.T, batches int, replace bool) ([]byte, [][]string) {
	t.Helper()
	mem := memory.DefaultAllocator
	dt := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
	schema := arrow.NewSchema([]arrow.Field{{Name: "cat", Type: dt}, {Name: "n", Type: arrow.PrimitiveTypes.Int64}}, nil)
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema), ipc.WithAllocator(mem), ipc.WithDictionaryDeltas(replace))
	var want [][]string
	for b := range batches {
		db := array.NewDictionaryBuilder(mem, dt).(*array.BinaryDictionaryBuilder)
		nb := array.NewInt64Builder(mem)
		var vals []string
		for i := range 5 {
			v := fmt.Sprintf("v%d", i%3)
			if replace {
				v = fmt.Sprintf("b%d-v%d", b, i%3)
			}
			if err := db.AppendString(v); err != nil {
				t.Fatal(err)
			}
			nb.Append(int64(b*5 + i))
			vals = append(vals, v)
		}
		want = append(want, vals)
		cols := []arrow.Array{db.NewArray(), nb.NewArray()}
		rec := array.NewRecordBatch(schema, cols, 5)
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
		cols[0].Release()
		cols[1].Release()
		db.Release()
		nb.Release()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), want
}

// Every segment of a stream with a dictionary column decodes, with the
// values of its own rows, whether the dictionaries all come first or
// change between record batches.
func TestIPCStreamWithDictionaries(t *testing.T) {
	for _, replace := range []bool{false, true} {
		data, want := dictStream(t, 4, replace)
		obj := &memObject{data}
		f, err := Index(context.Background(), "d.arrows", obj, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if f.Rows != 20 {
			t.Fatalf("replace=%v: %d rows", replace, f.Rows)
		}
		r := NewReader(f)
		var got []string
		for i := range f.Segments {
			rec, err := r.ReadSegment(context.Background(), obj, i)
			if err != nil {
				t.Fatalf("replace=%v: segment %d of %d: %v", replace, i, len(f.Segments), err)
			}
			d := rec.Column(0).(*array.Dictionary)
			vals := d.Dictionary().(*array.String)
			for k := range d.Len() {
				got = append(got, vals.Value(d.GetValueIndex(k)))
			}
			rec.Release()
		}
		var flat []string
		for _, w := range want {
			flat = append(flat, w...)
		}
		if fmt.Sprint(got) != fmt.Sprint(flat) {
			t.Errorf("replace=%v: values\n got %v\nwant %v", replace, got, flat)
		}
	}
}
