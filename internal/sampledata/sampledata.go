// Package sampledata generates deterministic sample datasets in every
// supported format, with every type the read path must carry (ints, floats,
// bools, strings, binary, timestamps with a zone, decimals, lists, structs,
// nulls). The demo, the tests and the benchmarks use it.
package sampledata

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// MixedSchema has one column of each kind of type.
func MixedSchema() *arrow.Schema {
	return arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "i32", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "f64", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "flag", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "blob", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "Europe/Paris"}, Nullable: true},
		{Name: "price", Type: &arrow.Decimal128Type{Precision: 12, Scale: 2}, Nullable: true},
		{Name: "tags", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32), Nullable: true},
		{Name: "point", Type: arrow.StructOf(
			arrow.Field{Name: "x", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
			arrow.Field{Name: "label", Type: arrow.BinaryTypes.String, Nullable: true}), Nullable: true},
	}, nil)
}

// MixedRecord returns rows [start, start+n) of the mixed sample, the same
// values for the same rows on every call.
func MixedRecord(start, n int64) arrow.RecordBatch {
	mem := memory.DefaultAllocator
	b := array.NewRecordBuilder(mem, MixedSchema())
	defer b.Release()
	for r := start; r < start+n; r++ {
		rng := rand.New(rand.NewPCG(uint64(r), 0x5eed))
		null := func(p int) bool { return rng.IntN(100) < p }
		b.Field(0).(*array.Int64Builder).Append(r)
		if null(10) {
			b.Field(1).AppendNull()
		} else {
			b.Field(1).(*array.Int32Builder).Append(int32(rng.Uint32()))
		}
		if null(5) {
			b.Field(2).AppendNull()
		} else {
			b.Field(2).(*array.Float64Builder).Append(rng.NormFloat64())
		}
		if null(5) {
			b.Field(3).AppendNull()
		} else {
			b.Field(3).(*array.BooleanBuilder).Append(rng.IntN(2) == 0)
		}
		if null(8) {
			b.Field(4).AppendNull()
		} else {
			b.Field(4).(*array.StringBuilder).Append(fmt.Sprintf("row-%d-%s", r, string([]rune("ünïcødé")[:rng.IntN(8)])))
		}
		if null(8) {
			b.Field(5).AppendNull()
		} else {
			blob := make([]byte, rng.IntN(48))
			for i := range blob {
				blob[i] = byte(rng.Uint32())
			}
			b.Field(5).(*array.BinaryBuilder).Append(blob)
		}
		if null(5) {
			b.Field(6).AppendNull()
		} else {
			b.Field(6).(*array.TimestampBuilder).Append(arrow.Timestamp(1_700_000_000_000_000 + r*1_000_003))
		}
		if null(5) {
			b.Field(7).AppendNull()
		} else {
			b.Field(7).(*array.Decimal128Builder).Append(decimal128.FromI64(int64(rng.IntN(10_000_000)) - 5_000_000))
		}
		lb := b.Field(8).(*array.ListBuilder)
		if null(7) {
			lb.AppendNull()
		} else {
			lb.Append(true)
			vb := lb.ValueBuilder().(*array.Int32Builder)
			for i := rng.IntN(5); i > 0; i-- {
				if null(10) {
					vb.AppendNull()
				} else {
					vb.Append(int32(rng.IntN(1000)))
				}
			}
		}
		sb := b.Field(9).(*array.StructBuilder)
		if null(6) {
			sb.AppendNull()
		} else {
			sb.Append(true)
			sb.FieldBuilder(0).(*array.Float32Builder).Append(float32(r) / 3)
			if null(20) {
				sb.FieldBuilder(1).AppendNull()
			} else {
				sb.FieldBuilder(1).(*array.StringBuilder).Append(fmt.Sprintf("p%d", r%97))
			}
		}
	}
	return b.NewRecordBatch()
}

// WriteParquet writes rows [0, rows) of the mixed sample to path, with
// row groups of rowGroup rows, zstd-compressed, in chunks of at most 64k rows.
func WriteParquet(path string, rows, rowGroup int64) error {
	return writeParquetFrom(path, 0, rows, rowGroup)
}

func writeParquetFrom(path string, start, rows, rowGroup int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	props := parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(rowGroup), parquet.WithCompression(compress.Codecs.Zstd))
	w, err := pqarrow.NewFileWriter(MixedSchema(), f, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return fmt.Errorf("parquet writer: %w", err)
	}
	for r := start; r < start+rows; {
		n := min(rowGroup, start+rows-r)
		rec := MixedRecord(r, n)
		if err := w.Write(rec); err != nil {
			return fmt.Errorf("write parquet: %w", err)
		}
		rec.Release()
		r += n
	}
	// The parquet writer closes f too.
	if err := w.Close(); err != nil {
		return fmt.Errorf("close parquet: %w", err)
	}
	return nil
}

// WriteIPC writes rows [start, start+rows) as an Arrow IPC file (stream
// false) or stream (stream true), in record batches of chunk rows.
func WriteIPC(path string, start, rows, chunk int64, stream bool) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	type writer interface {
		Write(arrow.RecordBatch) error
		Close() error
	}
	var w writer
	if stream {
		w = ipc.NewWriter(f, ipc.WithSchema(MixedSchema()))
	} else {
		fw, err := ipc.NewFileWriter(f, ipc.WithSchema(MixedSchema()))
		if err != nil {
			return err
		}
		w = fw
	}
	for r := start; r < start+rows; r += chunk {
		rec := MixedRecord(r, min(chunk, start+rows-r))
		if err := w.Write(rec); err != nil {
			return err
		}
		rec.Release()
	}
	if err := w.Close(); err != nil {
		return err
	}
	return f.Close()
}

// WriteCSV writes a CSV sample: id,x,label,flag with some empty (null) cells.
func WriteCSV(path string, start, rows int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := csv.NewWriter(f)
	if err := w.Write([]string{"id", "x", "label", "flag"}); err != nil {
		return err
	}
	for r := start; r < start+rows; r++ {
		x := fmt.Sprintf("%.3f", float64(r)*0.5)
		if r%17 == 3 {
			x = ""
		}
		label := fmt.Sprintf("item %d, \"quoted\"\nline 2", r)
		if r%13 == 5 {
			label = ""
		}
		if err := w.Write([]string{fmt.Sprint(r), x, label, fmt.Sprint(r%3 == 0)}); err != nil {
			return err
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return f.Close()
}

// WriteJSONL writes a JSON Lines sample with nested values and nulls.
func WriteJSONL(path string, start, rows int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for r := start; r < start+rows; r++ {
		rec := map[string]any{"id": r, "score": float64(r) / 4, "name": fmt.Sprintf("n%d", r),
			"tags": []int64{r % 5, r % 7}, "meta": map[string]any{"ok": r%2 == 0, "src": "gen"}}
		if r%11 == 0 {
			rec["name"] = nil
		}
		if err := enc.Encode(rec); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// WriteAll writes one dataset directory per format under dir (parquet/,
// arrow/, csv/, jsonl/), each of rows rows split over two files so that
// batches span files. It returns the directories by name.
func WriteAll(dir string, rows int64) (map[string]string, error) {
	half := rows / 2
	out := map[string]string{}
	steps := []struct {
		name  string
		write func(d string) error
	}{
		{"parquet", func(d string) error {
			if err := writeParquetFrom(filepath.Join(d, "part-0.parquet"), 0, half, 1000); err != nil {
				return err
			}
			return writeParquetFrom(filepath.Join(d, "part-1.parquet"), half, rows-half, 1000)
		}},
		{"arrow", func(d string) error {
			if err := WriteIPC(filepath.Join(d, "part-0.arrow"), 0, half, 700, false); err != nil {
				return err
			}
			return WriteIPC(filepath.Join(d, "part-1.arrows"), half, rows-half, 700, true)
		}},
		{"csv", func(d string) error {
			if err := WriteCSV(filepath.Join(d, "part-0.csv"), 0, half); err != nil {
				return err
			}
			return WriteCSV(filepath.Join(d, "part-1.csv"), half, rows-half)
		}},
		{"jsonl", func(d string) error {
			if err := WriteJSONL(filepath.Join(d, "part-0.jsonl"), 0, half); err != nil {
				return err
			}
			return WriteJSONL(filepath.Join(d, "part-1.jsonl"), half, rows-half)
		}},
	}
	for _, s := range steps {
		d := filepath.Join(dir, s.name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		if err := s.write(d); err != nil {
			return nil, fmt.Errorf("sample %s: %w", s.name, err)
		}
		out[s.name] = d
	}
	return out, nil
}
