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

// BlobBytes is the size of each blob of the blobs dataset.
const BlobBytes = 64 << 10

// Dataset is one generated dataset: Files Parquet files of RowsPerFile
// rows each, row groups of RowGroup rows, read in batches of Batch rows.
type Dataset struct {
	Name        string // "table" or "blobs"; also the S3 prefix and zenithfs dataset name
	Files       int
	RowsPerFile int64
	RowGroup    int64
	Batch       int
}

// Rows is the dataset's row count.
func (d Dataset) Rows() int64 { return int64(d.Files) * d.RowsPerFile }

// Dir is where the dataset's files live under root; the name encodes every
// parameter, so a cached copy is reused only when it matches.
func (d Dataset) Dir(root string) string {
	return filepath.Join(root, fmt.Sprintf("%s-%dx%d-rg%d", d.Name, d.Files, d.RowsPerFile, d.RowGroup))
}

// FileName is the name of file i (lexicographic = row order).
func (d Dataset) FileName(i int) string { return fmt.Sprintf("part-%04d.parquet", i) }

// Schema is the Arrow schema of the dataset.
func (d Dataset) Schema() *arrow.Schema {
	if d.Name == "blobs" {
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

// record builds global rows [start, start+n); the same rows always get the
// same values (the generator is seeded by the first row).
func (d Dataset) record(start, n int64) arrow.RecordBatch {
	b := array.NewRecordBuilder(memory.DefaultAllocator, d.Schema())
	defer b.Release()
	rng := rand.New(rand.NewPCG(uint64(start), 0xbe7c4))
	if d.Name == "blobs" {
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

// Generate writes the dataset's files under root (skipping files already
// there) and returns the dataset's directory and its total bytes.
func Generate(root string, d Dataset) (string, int64, error) {
	if d.Files <= 0 || d.RowsPerFile <= 0 || d.RowGroup <= 0 || d.Batch <= 0 {
		return "", 0, errors.New("generate: files, rows, row group and batch must be positive")
	}
	dir := d.Dir(root)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, fmt.Errorf("generate: %w", err)
	}
	var total int64
	for i := 0; i < d.Files; i++ {
		path := filepath.Join(dir, d.FileName(i))
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			total += fi.Size()
			continue
		}
		if err := d.writeFile(path, int64(i)*d.RowsPerFile); err != nil {
			return "", 0, err
		}
		fi, err := os.Stat(path)
		if err != nil {
			return "", 0, fmt.Errorf("generate: %w", err)
		}
		total += fi.Size()
	}
	return dir, total, nil
}

// writeFile writes one Parquet file holding rows [first, first+RowsPerFile).
func (d Dataset) writeFile(path string, first int64) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	defer os.Remove(tmp)
	codec := compress.Codecs.Snappy
	if d.Name == "blobs" {
		codec = compress.Codecs.Uncompressed // random bytes do not compress
	}
	props := parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(d.RowGroup), parquet.WithCompression(codec))
	w, err := pqarrow.NewFileWriter(d.Schema(), f, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		f.Close()
		return fmt.Errorf("generate %s: %w", path, err)
	}
	// Write whole row groups: each Write call ends at a row-group boundary.
	for start := int64(0); start < d.RowsPerFile; start += d.RowGroup {
		rec := d.record(first+start, min(d.RowGroup, d.RowsPerFile-start))
		err := w.WriteBuffered(rec)
		rec.Release()
		if err != nil {
			w.Close()
			f.Close()
			return fmt.Errorf("generate %s: %w", path, err)
		}
	}
	if err := w.Close(); err != nil { // closes f too
		return fmt.Errorf("generate %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	return nil
}
