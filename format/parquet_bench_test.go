package format

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/zenithfs/zenithfs/internal/sampledata"
)

// tableParquet is the mixed sample (internal/sampledata) as Parquet: rows
// rows in row groups of rg.
func tableParquet(b *testing.B, rows, rg int64) []byte {
	b.Helper()
	path := filepath.Join(b.TempDir(), "table.parquet")
	if err := sampledata.WriteParquet(path, rows, rg); err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// blobsParquet is rows 64 KiB binary values, uncompressed, in row groups
// of rg (bench/peers' blobs shape).
func blobsParquet(b *testing.B, rows, rg int64) []byte {
	b.Helper()
	schema := arrow.NewSchema([]arrow.Field{{Name: "image", Type: arrow.BinaryTypes.Binary}}, nil)
	bb := array.NewBinaryBuilder(memory.DefaultAllocator, arrow.BinaryTypes.Binary)
	defer bb.Release()
	rng := rand.New(rand.NewPCG(1, 2))
	blob := make([]byte, 64<<10)
	for range rows {
		for i := range blob {
			blob[i] = byte(rng.Uint32())
		}
		bb.Append(blob)
	}
	col := bb.NewArray()
	defer col.Release()
	rec := array.NewRecordBatch(schema, []arrow.Array{col}, rows)
	defer rec.Release()
	var buf bytes.Buffer
	props := parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(rg), parquet.WithCompression(compress.Codecs.Uncompressed))
	w, err := pqarrow.NewFileWriter(schema, &buf, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
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
// build does: the mixed sample in row groups of 16384 rows, and 1 MiB
// row groups of blobs.
func BenchmarkReadParquetRowGroup(b *testing.B) {
	for _, tc := range []struct {
		name string
		file func(*testing.B) []byte
	}{
		{"table", func(b *testing.B) []byte { return tableParquet(b, 65536, 16384) }},
		{"blobs", func(b *testing.B) []byte { return blobsParquet(b, 64, 16) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			obj := &memObject{b: tc.file(b)}
			f, err := Index(context.Background(), "x.parquet", obj, Options{})
			if err != nil {
				b.Fatal(err)
			}
			r := NewReader(f)
			b.SetBytes(obj.Size() / int64(len(f.Segments)))
			b.ReportAllocs()
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
