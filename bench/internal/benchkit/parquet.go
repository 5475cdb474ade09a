package benchkit

import (
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// BlobBytes is the size of each blob of the blobs dataset.
const BlobBytes = 64 << 10

// Schema is the Arrow schema of the generated data: with blobs, rows of
// one 64 KiB binary blob each (image-like samples: the read path is
// dominated by bytes, not decoding); otherwise a table of ten scalar
// columns (~70 bytes a row).
func Schema(blobs bool) *arrow.Schema {
	if blobs {
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

// Record builds global rows [start, start+n) of the dataset of
// Schema(blobs); the same rows always get the same values (the generator
// is seeded by the first row).
func Record(blobs bool, start, n int64) arrow.RecordBatch {
	b := array.NewRecordBuilder(memory.DefaultAllocator, Schema(blobs))
	defer b.Release()
	rng := rand.New(rand.NewPCG(uint64(start), 0xbe7c4))
	if blobs {
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

// WriteParquet writes global rows [first, first+rows) of the dataset of
// Schema(blobs) to path (through path.tmp, renamed when complete): row
// groups of rowGroup rows, built chunk rows at a time; Snappy for the
// table, uncompressed blobs (random bytes do not compress).
func WriteParquet(path string, blobs bool, first, rows, rowGroup, chunk int64) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	defer os.Remove(tmp)
	codec := compress.Codecs.Snappy
	if blobs {
		codec = compress.Codecs.Uncompressed
	}
	props := parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(rowGroup), parquet.WithCompression(codec))
	w, err := pqarrow.NewFileWriter(Schema(blobs), f, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		f.Close()
		return fmt.Errorf("generate %s: %w", path, err)
	}
	for start := int64(0); start < rows; start += chunk {
		rec := Record(blobs, first+start, min(chunk, rows-start))
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
