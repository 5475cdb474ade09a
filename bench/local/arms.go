package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"golang.org/x/sys/unix"
)

// batchFiles lists the batch files of dir (NNNNNN.arrow) in batch order.
func batchFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasSuffix(n, ".arrow") && !strings.HasPrefix(n, "_") {
			out = append(out, filepath.Join(dir, n))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("list %s: no batch files", dir)
	}
	return out, nil
}

// fileReader reads whole files into one reused buffer, the way a loader
// that copies each batch into its own memory does. Every arm that reads
// bytes uses it, so they differ only in where the bytes come from.
type fileReader struct {
	buf      []byte
	openTime time.Duration // of the last read: open(2), where the daemon hands over the batch
}

// read reads the whole file and returns its bytes (valid until the next call).
func (r *fileReader) read(path string) ([]byte, error) {
	t0 := time.Now()
	f, err := os.Open(path)
	r.openTime = time.Since(t0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if need := int(fi.Size()) + 1; cap(r.buf) < need {
		r.buf = make([]byte, need)
	}
	buf := r.buf[:cap(r.buf)]
	n := 0
	for {
		m, err := f.Read(buf[n:])
		n += m
		if err == io.EOF || m == 0 && err == nil {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if n == len(buf) { // larger than stat said: grow
			buf = append(buf, make([]byte, len(buf))...)
			r.buf = buf
		}
	}
	if int64(n) != fi.Size() {
		return nil, fmt.Errorf("read %s: got %d bytes, stat says %d", path, n, fi.Size())
	}
	return buf[:n], nil
}

// readAll reads every file once, in order.
func readAll(paths []string) (int64, time.Duration, error) {
	var r fileReader
	var total int64
	start := time.Now()
	for _, p := range paths {
		b, err := r.read(p)
		if err != nil {
			return total, 0, err
		}
		total += int64(len(b))
	}
	return total, time.Since(start), nil
}

// evictPageCache drops the kernel's cached pages of each file
// (POSIX_FADV_DONTNEED). On a FUSE file this leaves the daemon's own cache
// untouched, so the next read is served by the daemon.
func evictPageCache(paths []string) error {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
		if err != nil {
			return fmt.Errorf("fadvise %s: %w", p, err)
		}
	}
	return nil
}

// decodeIPC decodes every record batch of an Arrow IPC file held in b and
// returns the rows.
func decodeIPC(b []byte) (int64, error) {
	fr, err := ipc.NewFileReader(bytes.NewReader(b), ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return 0, err
	}
	defer fr.Close()
	var rows int64
	for i := 0; i < fr.NumRecords(); i++ {
		rec, err := fr.RecordBatchAt(i)
		if err != nil {
			return rows, err
		}
		rows += rec.NumRows()
		rec.Release()
	}
	return rows, nil
}

// epochIPC reads and decodes every batch file in order: a trainer's epoch.
func epochIPC(paths []string) (int64, time.Duration, error) {
	var r fileReader
	var rows int64
	start := time.Now()
	for _, p := range paths {
		b, err := r.read(p)
		if err != nil {
			return rows, 0, err
		}
		n, err := decodeIPC(b)
		if err != nil {
			return rows, 0, fmt.Errorf("decode %s: %w", p, err)
		}
		rows += n
	}
	return rows, time.Since(start), nil
}

// parquetEpoch decodes the Parquet file in-process into record batches of
// batchSize rows with arrow-go (columns decoded in parallel, as pyarrow
// does by default): the "read the source directly" baseline.
func parquetEpoch(path string, batchSize int) (int64, time.Duration, error) {
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	pf, err := file.NewParquetReader(f)
	if err != nil {
		return 0, 0, fmt.Errorf("parquet %s: %w", path, err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: int64(batchSize), Parallel: true}, memory.DefaultAllocator)
	if err != nil {
		return 0, 0, fmt.Errorf("parquet %s: %w", path, err)
	}
	rr, err := fr.GetRecordReader(context.Background(), nil, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("parquet %s: %w", path, err)
	}
	defer rr.Release()
	var rows int64
	for rr.Next() {
		rows += rr.RecordBatch().NumRows()
	}
	if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return rows, 0, fmt.Errorf("parquet %s: %w", path, err)
	}
	return rows, time.Since(start), nil
}

// ConsumerResult is what a fixed-compute consumer saw.
type ConsumerResult struct {
	Wait, Total time.Duration
	OpenWait    time.Duration // the part of Wait spent in open(2)
	FirstWait   time.Duration // the part of Wait spent on the first batch (a fresh mount builds it cold)
	Batches     int
}

// WaitFraction is the share of the consumer's time spent waiting on data.
func (c ConsumerResult) WaitFraction() float64 {
	if c.Total <= 0 {
		return 0
	}
	return c.Wait.Seconds() / c.Total.Seconds()
}

// consume reads the files in order and spends compute on each batch
// (sleeping, like a trainer waiting on its GPU, or spinning, like one
// computing on the CPU). Time spent opening and reading counts as waiting.
func consume(paths []string, compute time.Duration, spin bool) (ConsumerResult, error) {
	var r fileReader
	var res ConsumerResult
	start := time.Now()
	for _, p := range paths {
		t0 := time.Now()
		if _, err := r.read(p); err != nil {
			return res, err
		}
		w := time.Since(t0)
		res.Wait += w
		if res.Batches == 0 {
			res.FirstWait = w
		}
		res.OpenWait += r.openTime
		res.Batches++
		if spin {
			for end := time.Now().Add(compute); time.Now().Before(end); {
			}
		} else {
			time.Sleep(compute)
		}
	}
	res.Total = time.Since(start)
	return res, nil
}

// copyFiles copies the files into dir (a tmpfs) and returns the copies'
// paths.
func copyFiles(paths []string, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var r fileReader
	out := make([]string, len(paths))
	for i, p := range paths {
		b, err := r.read(p)
		if err != nil {
			return nil, err
		}
		out[i] = filepath.Join(dir, filepath.Base(p))
		if err := os.WriteFile(out[i], b, 0o644); err != nil {
			return nil, err
		}
	}
	return out, nil
}
