package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// Kind is one benchmark dataset: several Parquet files of one shape.
type Kind struct {
	Name     string
	Files    int
	Rows     int64 // per file
	RowGroup int64
	Batch    int // rows per batch file (and per baseline batch)
}

// The shapes mirror the local benchmark's (bench/local): a tabular dataset
// of small numeric/string columns, and image-like samples of 64 KiB blobs.
const blobSize = 64 << 10

func (k Kind) schema() *arrow.Schema {
	if k.Name == "blobs" {
		return arrow.NewSchema([]arrow.Field{
			{Name: "id", Type: arrow.PrimitiveTypes.Int64},
			{Name: "label", Type: arrow.PrimitiveTypes.Int32},
			{Name: "image", Type: arrow.BinaryTypes.Binary},
		}, nil)
	}
	fields := []arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "label", Type: arrow.PrimitiveTypes.Int32},
	}
	for i := 0; i < 16; i++ {
		fields = append(fields, arrow.Field{Name: fmt.Sprintf("f%02d", i), Type: arrow.PrimitiveTypes.Float32})
	}
	fields = append(fields, arrow.Field{Name: "category", Type: arrow.BinaryTypes.String},
		arrow.Field{Name: "note", Type: arrow.BinaryTypes.String, Nullable: true})
	return arrow.NewSchema(fields, nil)
}

// record returns rows [start, start+n) of the dataset, deterministically.
func (k Kind) record(start, n int64) arrow.RecordBatch {
	b := array.NewRecordBuilder(memory.DefaultAllocator, k.schema())
	defer b.Release()
	rng := rand.New(rand.NewPCG(uint64(start), 0xbe7c4))
	blob := make([]byte, blobSize)
	for r := start; r < start+n; r++ {
		b.Field(0).(*array.Int64Builder).Append(r)
		b.Field(1).(*array.Int32Builder).Append(int32(rng.IntN(1000)))
		if k.Name == "blobs" {
			for i := 0; i < len(blob); i += 8 {
				v := rng.Uint64()
				for j := 0; j < 8; j++ {
					blob[i+j] = byte(v >> (8 * j))
				}
			}
			b.Field(2).(*array.BinaryBuilder).Append(blob)
			continue
		}
		for i := 0; i < 16; i++ {
			b.Field(2 + i).(*array.Float32Builder).Append(float32(rng.NormFloat64()))
		}
		b.Field(18).(*array.StringBuilder).Append(fmt.Sprintf("class-%02d", rng.IntN(16)))
		if rng.IntN(4) == 0 {
			b.Field(19).AppendNull()
		} else {
			b.Field(19).(*array.StringBuilder).Append(fmt.Sprintf("sample %d of run %d", r, rng.IntN(100)))
		}
	}
	return b.NewRecordBatch()
}

// generate writes the dataset's files into dir, unless a previous run wrote
// them with the same parameters.
func (k Kind) generate(dir string) error {
	stamp := filepath.Join(dir, ".params.json")
	want, _ := json.Marshal(k)
	if got, err := os.ReadFile(stamp); err == nil && string(got) == string(want) {
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	codec := compress.Codecs.Snappy
	if k.Name == "blobs" {
		codec = compress.Codecs.Uncompressed // random bytes do not compress
	}
	props := parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(k.RowGroup), parquet.WithCompression(codec))
	for f := 0; f < k.Files; f++ {
		out, err := os.Create(filepath.Join(dir, fmt.Sprintf("part-%03d.parquet", f)))
		if err != nil {
			return err
		}
		w, err := pqarrow.NewFileWriter(k.schema(), out, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
		if err != nil {
			return err
		}
		first := int64(f) * k.Rows
		for r := first; r < first+k.Rows; r += k.RowGroup {
			rec := k.record(r, min(k.RowGroup, first+k.Rows-r))
			if err := w.Write(rec); err != nil {
				return fmt.Errorf("write %s: %w", out.Name(), err)
			}
			rec.Release()
		}
		if err := w.Close(); err != nil { // closes out
			return fmt.Errorf("close %s: %w", out.Name(), err)
		}
	}
	return os.WriteFile(stamp, want, 0o644)
}
