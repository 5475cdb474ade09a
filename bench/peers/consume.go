package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// Consumed is what one consumer run reports (as JSON on stdout).
type Consumed struct {
	Rows    int64  `json:"rows"`
	Batches int64  `json:"batches"`
	Bytes   int64  `json:"bytes"` // Arrow buffer bytes touched
	Sum     uint64 `json:"sum"`   // of every word touched, so nothing is optimised away
	StartNS int64  `json:"start_ns"`
	FirstNS int64  `json:"first_ns"` // unix ns when the first batch had been touched
	EndNS   int64  `json:"end_ns"`
	Partial bool   `json:"partial"` // stopped by -max-seconds before the end
	// Files the consumer opened (FUSE arms) or objects it read (SDK arm).
	Files int `json:"files"`
}

// consumer iterates batches and touches every value of every column.
type consumer struct {
	res      Consumed
	deadline time.Time
}

func newConsumer(maxTime time.Duration) *consumer {
	c := &consumer{}
	now := time.Now()
	c.res.StartNS = now.UnixNano()
	if maxTime > 0 {
		c.deadline = now.Add(maxTime)
	}
	return c
}

// expired tells whether the time budget is spent (the run is then partial).
func (c *consumer) expired() bool {
	if !c.deadline.IsZero() && time.Now().After(c.deadline) {
		c.res.Partial = true
		return true
	}
	return false
}

// batch touches a record batch.
func (c *consumer) batch(rec arrow.RecordBatch) {
	for _, col := range rec.Columns() {
		c.touch(col.Data())
	}
	c.res.Rows += rec.NumRows()
	c.res.Batches++
	if c.res.FirstNS == 0 {
		c.res.FirstNS = time.Now().UnixNano()
	}
}

// touch reads every byte of every buffer of an array (and its children):
// validity bitmaps, offsets and values alike, the way a training step that
// converts a batch to tensors reads all of it.
func (c *consumer) touch(d arrow.ArrayData) {
	for _, b := range d.Buffers() {
		if b == nil || b.Len() == 0 {
			continue
		}
		p := b.Bytes()
		c.res.Bytes += int64(len(p))
		words := len(p) / 8
		var s uint64
		if words > 0 {
			ws := unsafe.Slice((*uint64)(unsafe.Pointer(&p[0])), words)
			for _, w := range ws {
				s += w
			}
		}
		for _, x := range p[words*8:] {
			s += uint64(x)
		}
		c.res.Sum += s
	}
	for _, ch := range d.Children() {
		c.touch(ch)
	}
}

func (c *consumer) done() Consumed {
	c.res.EndNS = time.Now().UnixNano()
	return c.res
}

// ipcFiles lists the batch files of a dataset or view directory in order.
func ipcFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".arrow") && !strings.HasPrefix(n, "_") {
			out = append(out, filepath.Join(dir, n))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("list %s: no batch files", dir)
	}
	return out, nil
}

// consumeIPC reads each batch file whole (one reused buffer, read(2) until
// EOF) and decodes it with arrow-go's IPC file reader.
func consumeIPC(dir string, maxTime time.Duration) (Consumed, error) {
	c := newConsumer(maxTime)
	files, err := ipcFiles(dir)
	if err != nil {
		return c.done(), err
	}
	var buf bytes.Buffer
	for _, p := range files {
		if c.expired() {
			break
		}
		f, err := os.Open(p)
		if err != nil {
			return c.done(), fmt.Errorf("open %s: %w", p, err)
		}
		buf.Reset()
		_, err = buf.ReadFrom(f)
		f.Close()
		if err != nil {
			return c.done(), fmt.Errorf("read %s: %w", p, err)
		}
		c.res.Files++
		fr, err := ipc.NewFileReader(bytes.NewReader(buf.Bytes()), ipc.WithAllocator(memory.DefaultAllocator))
		if err != nil {
			return c.done(), fmt.Errorf("decode %s: %w", p, err)
		}
		for i := 0; i < fr.NumRecords(); i++ {
			rec, err := fr.RecordBatchAt(i)
			if err != nil {
				fr.Close()
				return c.done(), fmt.Errorf("decode %s: %w", p, err)
			}
			c.batch(rec)
			rec.Release()
		}
		fr.Close()
	}
	return c.done(), nil
}

// Unit is one row group of one file: what the peers' consumer reads in a
// (possibly shuffled) order.
type Unit struct{ File, RowGroup int }

// Order lists every row group of files with the given row-group counts,
// in file order, or shuffled with a seeded permutation.
func Order(rowGroups []int, shuffled bool, seed, epoch uint64) []Unit {
	var us []Unit
	for f, n := range rowGroups {
		for g := 0; g < n; g++ {
			us = append(us, Unit{f, g})
		}
	}
	if shuffled {
		rng := rand.New(rand.NewPCG(seed, epoch))
		rng.Shuffle(len(us), func(i, j int) { us[i], us[j] = us[j], us[i] })
	}
	return us
}

// readProps are the Parquet decoding settings of every Parquet arm:
// columns decoded in parallel (as pyarrow does by default), batches of
// the benchmark's batch size.
func readProps(batch int) pqarrow.ArrowReadProperties {
	return pqarrow.ArrowReadProperties{Parallel: true, BatchSize: int64(batch)}
}

// parquetFiles are the Parquet files of a directory, in name order.
func parquetFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".parquet") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("list %s: no Parquet files", dir)
	}
	return out, nil
}

// consumeParquet decodes the Parquet files of dir (a local directory or a
// FUSE mount of the bucket) row group by row group, in file order or in a
// shuffled order, through os.File ReadAt calls.
func consumeParquet(dir string, batch int, shuffled bool, seed, epoch uint64, maxTime time.Duration) (Consumed, error) {
	c := newConsumer(maxTime)
	paths, err := parquetFiles(dir)
	if err != nil {
		return c.done(), err
	}
	readers := make([]*pqarrow.FileReader, len(paths))
	counts := make([]int, len(paths))
	open := func(i int) error {
		f, err := os.Open(paths[i])
		if err != nil {
			return fmt.Errorf("open %s: %w", paths[i], err)
		}
		c.res.Files++
		pr, err := file.NewParquetReader(f, file.WithReadProps(parquet.NewReaderProperties(memory.DefaultAllocator)))
		if err != nil {
			f.Close()
			return fmt.Errorf("parquet %s: %w", paths[i], err)
		}
		readers[i], err = pqarrow.NewFileReader(pr, readProps(batch), memory.DefaultAllocator)
		if err != nil {
			return fmt.Errorf("parquet %s: %w", paths[i], err)
		}
		counts[i] = pr.NumRowGroups()
		return nil
	}
	defer func() {
		for _, r := range readers {
			if r != nil {
				r.ParquetReader().Close()
			}
		}
	}()
	// Natural order opens each file when it is reached; a shuffled order
	// needs every footer first to know the row groups.
	if shuffled {
		for i := range paths {
			if err := open(i); err != nil {
				return c.done(), err
			}
		}
		for _, u := range Order(counts, true, seed, epoch) {
			if c.expired() {
				break
			}
			if err := c.rowGroup(readers[u.File], u.RowGroup); err != nil {
				return c.done(), fmt.Errorf("%s row group %d: %w", paths[u.File], u.RowGroup, err)
			}
		}
		return c.done(), nil
	}
	for i := range paths {
		if err := open(i); err != nil {
			return c.done(), err
		}
		for g := 0; g < counts[i]; g++ {
			if c.expired() {
				return c.done(), nil
			}
			if err := c.rowGroup(readers[i], g); err != nil {
				return c.done(), fmt.Errorf("%s row group %d: %w", paths[i], g, err)
			}
		}
		readers[i].ParquetReader().Close()
		readers[i] = nil
	}
	return c.done(), nil
}

// rowGroup decodes one row group into batches and touches them.
func (c *consumer) rowGroup(r *pqarrow.FileReader, g int) error {
	rr, err := r.GetRecordReader(context.Background(), nil, []int{g})
	if err != nil {
		return err
	}
	defer rr.Release()
	for rr.Next() {
		c.batch(rr.RecordBatch())
	}
	if err := rr.Err(); err != nil && err != io.EOF {
		return err
	}
	return nil
}

// writeConsumed prints the result as one JSON line.
func writeConsumed(w io.Writer, r Consumed) error {
	return json.NewEncoder(w).Encode(r)
}
