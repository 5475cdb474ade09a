package main

import (
	"errors"
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

// Kind names a generated dataset shape.
type Kind string

const (
	// KindTable is a tabular dataset of ten scalar columns (~70 bytes a row).
	KindTable Kind = "table"
	// KindBlobs is a dataset whose rows carry one 64 KiB binary blob each
	// (image-like samples): the read path is dominated by bytes, not decoding.
	KindBlobs Kind = "blobs"
)

// BlobBytes is the size of each blob of KindBlobs.
const BlobBytes = 64 << 10

// GenSpec describes one generated Parquet file.
type GenSpec struct {
	Kind     Kind
	Rows     int64
	RowGroup int64 // rows per Parquet row group
}

// FileName is a name that encodes the spec, so a cached file is reused only
// when it was generated with the same parameters.
func (g GenSpec) FileName() string {
	return fmt.Sprintf("%s-%d-rg%d.parquet", g.Kind, g.Rows, g.RowGroup)
}

// Schema is the Arrow schema of the generated data.
func (g GenSpec) Schema() *arrow.Schema {
	if g.Kind == KindBlobs {
		return arrow.NewSchema([]arrow.Field{
			{Name: "id", Type: arrow.PrimitiveTypes.Int64},
			{Name: "label", Type: arrow.PrimitiveTypes.Int32},
			{Name: "image", Type: arrow.BinaryTypes.Binary},
		}, nil)
	}
	return arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "user", Type: arrow.PrimitiveTypes.Int32},
		{Name: "item", Type: arrow.PrimitiveTypes.Int64},
		{Name: "rating", Type: arrow.PrimitiveTypes.Float32},
		{Name: "score", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "clicked", Type: arrow.FixedWidthTypes.Boolean},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}},
		{Name: "category", Type: arrow.BinaryTypes.String},
		{Name: "text", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "weight", Type: arrow.PrimitiveTypes.Float64},
	}, nil)
}

var categories = []string{"books", "music", "video", "games", "garden", "tools", "toys", "food"}

const words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua"

// record builds rows [start, start+n) of the dataset; the same rows always
// get the same values.
func (g GenSpec) record(start, n int64) arrow.RecordBatch {
	b := array.NewRecordBuilder(memory.DefaultAllocator, g.Schema())
	defer b.Release()
	rng := rand.New(rand.NewPCG(uint64(start), 0xbe7c4))
	if g.Kind == KindBlobs {
		blob := make([]byte, BlobBytes)
		ids, labels := b.Field(0).(*array.Int64Builder), b.Field(1).(*array.Int32Builder)
		imgs := b.Field(2).(*array.BinaryBuilder)
		imgs.ReserveData(int(n) * BlobBytes)
		for r := start; r < start+n; r++ {
			for i := 0; i < len(blob); i += 8 {
				v := rng.Uint64()
				for j := 0; j < 8; j++ {
					blob[i+j] = byte(v >> (8 * j))
				}
			}
			ids.Append(r)
			labels.Append(int32(rng.IntN(1000)))
			imgs.Append(blob)
		}
		return b.NewRecordBatch()
	}
	for r := start; r < start+n; r++ {
		b.Field(0).(*array.Int64Builder).Append(r)
		b.Field(1).(*array.Int32Builder).Append(int32(rng.IntN(1_000_000)))
		b.Field(2).(*array.Int64Builder).Append(rng.Int64N(50_000_000))
		b.Field(3).(*array.Float32Builder).Append(float32(rng.IntN(11)) / 2)
		if rng.IntN(20) == 0 {
			b.Field(4).AppendNull()
		} else {
			b.Field(4).(*array.Float64Builder).Append(rng.NormFloat64())
		}
		b.Field(5).(*array.BooleanBuilder).Append(rng.IntN(4) == 0)
		b.Field(6).(*array.TimestampBuilder).Append(arrow.Timestamp(1_700_000_000_000_000 + r*1_000_003))
		b.Field(7).(*array.StringBuilder).Append(categories[rng.IntN(len(categories))])
		if rng.IntN(10) == 0 {
			b.Field(8).AppendNull()
		} else {
			i := rng.IntN(len(words) - 40)
			b.Field(8).(*array.StringBuilder).Append(words[i : i+8+rng.IntN(32)])
		}
		b.Field(9).(*array.Float64Builder).Append(rng.Float64())
	}
	return b.NewRecordBatch()
}

// Generate writes the dataset to dir (if a file of the same spec is not
// there already) and returns its path.
func Generate(dir string, g GenSpec) (string, error) {
	if g.Rows <= 0 || g.RowGroup <= 0 {
		return "", errors.New("generate: rows and row group must be positive")
	}
	path := filepath.Join(dir, g.FileName())
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("generate: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return "", fmt.Errorf("generate: %w", err)
	}
	defer os.Remove(tmp)
	codec := compress.Codecs.Snappy
	if g.Kind == KindBlobs {
		codec = compress.Codecs.Uncompressed // random bytes do not compress
	}
	props := parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(g.RowGroup), parquet.WithCompression(codec))
	w, err := pqarrow.NewFileWriter(g.Schema(), f, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		f.Close()
		return "", fmt.Errorf("generate %s: %w", path, err)
	}
	chunk := min(g.RowGroup, 1<<16)
	if g.Kind == KindBlobs {
		chunk = min(g.RowGroup, 64)
	}
	for start := int64(0); start < g.Rows; start += chunk {
		rec := g.record(start, min(chunk, g.Rows-start))
		err := w.WriteBuffered(rec)
		rec.Release()
		if err != nil {
			w.Close()
			f.Close()
			return "", fmt.Errorf("generate %s: %w", path, err)
		}
	}
	if err := w.Close(); err != nil { // closes f too
		return "", fmt.Errorf("generate %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("generate: %w", err)
	}
	return path, nil
}
