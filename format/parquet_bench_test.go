package format

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// benchParquet is a Parquet file of rows rows in row groups of rg rows:
// the bench's "table" shape (numbers and two string columns, Snappy) or
// its "blobs" shape (64 KiB binary values, uncompressed).
func benchParquet(b *testing.B, blobs bool, rows, rg int64) []byte {
	b.Helper()
	fields := []arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "score", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "category", Type: arrow.BinaryTypes.String},
		{Name: "text", Type: arrow.BinaryTypes.String, Nullable: true},
	}
	codec := compress.Codecs.Snappy
	if blobs {
		fields = []arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "image", Type: arrow.BinaryTypes.Binary}}
		codec = compress.Codecs.Uncompressed
	}
	schema := arrow.NewSchema(fields, nil)
	rb := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer rb.Release()
	rng := rand.New(rand.NewPCG(1, 2))
	const words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore"
	blob := make([]byte, 64<<10)
	for r := range rows {
		rb.Field(0).(*array.Int64Builder).Append(r)
		if blobs {
			for i := range blob {
				blob[i] = byte(rng.Uint32())
			}
			rb.Field(1).(*array.BinaryBuilder).Append(blob)
			continue
		}
		rb.Field(1).(*array.Float64Builder).Append(rng.NormFloat64())
		rb.Field(2).(*array.StringBuilder).Append([]string{"books", "music", "video", "games"}[rng.IntN(4)])
		i := rng.IntN(len(words) - 40)
		rb.Field(3).(*array.StringBuilder).Append(words[i : i+8+rng.IntN(32)])
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w, err := pqarrow.NewFileWriter(schema, &buf, parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(rg), parquet.WithCompression(codec)), pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkReadParquetRowGroup decodes one row group at a time, as a batch
// build does.
func BenchmarkReadParquetRowGroup(b *testing.B) {
	for _, tc := range []struct {
		name     string
		blobs    bool
		rows, rg int64
	}{{"table", false, 65536, 16384}, {"blobs", true, 64, 16}} {
		obj := &memObject{b: benchParquet(b, tc.blobs, tc.rows, tc.rg)}
		b.Run(tc.name, func(b *testing.B) {
			f, err := Index(context.Background(), "x.parquet", obj, Options{})
			if err != nil {
				b.Fatal(err)
			}
			r := NewReader(f)
			b.SetBytes(obj.Size() / int64(len(f.Segments)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				rec, err := r.ReadSegment(context.Background(), obj, i%len(f.Segments))
				if err != nil {
					b.Fatal(err)
				}
				rec.Release()
			}
		})
	}
}
