// Command startup measures `zenithfs mount` start-up time on a ~1 GB
// Parquet dataset: the first mount (index pass: every batch encoded once to
// learn its exact size) and the second (index read back from the state
// dir), plus the time to the first batch after each mount.
//
//	go run ./bench/startup [-gb 1] [-dir /tmp/zenith-startup] [-batch 1024]
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

func main() {
	gb := flag.Float64("gb", 1, "dataset size in GB (Parquet bytes on disk, approximately)")
	dir := flag.String("dir", "/tmp/zenith-startup", "work directory (data is kept between runs)")
	batch := flag.Int("batch", 1024, "--batch-size")
	bin := flag.String("bin", "bin/zenithfs", "zenithfs binary")
	flag.Parse()
	data := filepath.Join(*dir, "data")
	if err := generate(data, int64(*gb*1e9)); err != nil {
		fail(err)
	}
	state := filepath.Join(*dir, "state")
	os.RemoveAll(state)
	mnt := filepath.Join(*dir, "mnt")
	os.MkdirAll(mnt, 0o755)
	var size int64
	filepath.Walk(data, func(_ string, fi os.FileInfo, _ error) error {
		if fi != nil && !fi.IsDir() {
			size += fi.Size()
		}
		return nil
	})
	fmt.Printf("dataset: %s, %.2f GB of Parquet, batch size %d\n", data, float64(size)/1e9, *batch)
	for _, run := range []string{"first mount (index pass)", "second mount (index cached)"} {
		start := time.Now()
		out, err := exec.Command(*bin, "mount", "--state-dir", state, "--batch-size", fmt.Sprint(*batch), "--dataset", "d="+data, mnt).CombinedOutput()
		if err != nil {
			fail(fmt.Errorf("mount: %v: %s", err, out))
		}
		mounted := time.Since(start)
		if _, err := os.ReadFile(filepath.Join(mnt, "d", "000000.arrow")); err != nil {
			fail(err)
		}
		first := time.Since(start)
		exec.Command(*bin, "umount", mnt).Run()
		fmt.Printf("%-28s mount ready %8.3f s   first batch read %8.3f s\n", run, mounted.Seconds(), first.Seconds())
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "startup:", err)
	os.Exit(1)
}

// generate writes Parquet files of about 128 MB each until total bytes.
func generate(dir string, total int64) error {
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return nil
	}
	os.MkdirAll(dir, 0o755)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "x", Type: arrow.PrimitiveTypes.Float32},
		{Name: "label", Type: arrow.PrimitiveTypes.Int32},
		{Name: "text", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "payload", Type: arrow.BinaryTypes.Binary},
	}, nil)
	var written, row int64
	for f := 0; written < total; f++ {
		p := filepath.Join(dir, fmt.Sprintf("part-%04d.parquet", f))
		fh, err := os.Create(p)
		if err != nil {
			return err
		}
		w, err := pqarrow.NewFileWriter(schema, fh, parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy),
			parquet.WithMaxRowGroupLength(16384)), pqarrow.DefaultWriterProps())
		if err != nil {
			return err
		}
		for i := 0; i < 8; i++ {
			b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
			rng := rand.New(rand.NewPCG(uint64(row), 7))
			payload := make([]byte, 1000)
			for r := 0; r < 16384; r++ {
				b.Field(0).(*array.Int64Builder).Append(row)
				b.Field(1).(*array.Float32Builder).Append(rng.Float32())
				b.Field(2).(*array.Int32Builder).Append(int32(rng.IntN(1000)))
				if r%10 == 0 {
					b.Field(3).AppendNull()
				} else {
					b.Field(3).(*array.StringBuilder).Append(fmt.Sprintf("sample text %d", row))
				}
				for j := range payload {
					payload[j] = byte(rng.Uint32())
				}
				b.Field(4).(*array.BinaryBuilder).Append(payload)
				row++
			}
			rec := b.NewRecordBatch()
			if err := w.Write(rec); err != nil {
				return err
			}
			rec.Release()
			b.Release()
		}
		if err := w.Close(); err != nil {
			return err
		}
		fi, _ := os.Stat(p)
		written += fi.Size()
	}
	return os.WriteFile(filepath.Join(dir, "done"), nil, 0o644)
}
