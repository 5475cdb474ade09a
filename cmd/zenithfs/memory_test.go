package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/zenithfs/zenithfs/internal/thp"
)

// writeBlobs writes an Arrow IPC file of rows rows, each a 64 KiB random
// (incompressible) blob, in record batches of chunk rows.
func writeBlobs(t *testing.T, path string, rows, chunk int) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "blob", Type: arrow.BinaryTypes.Binary}}, nil)
	w, err := ipc.NewFileWriter(f, ipc.WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 64<<10)
	for r := 0; r < rows; r += chunk {
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		for i := r; i < min(r+chunk, rows); i++ {
			rand.Read(blob)
			b.Field(0).(*array.Int64Builder).Append(int64(i))
			b.Field(1).(*array.BinaryBuilder).Append(blob)
		}
		rec := b.NewRecordBatch()
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
		b.Release()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	return fi.Size()
}

func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestMemoryStaysWithinBudget reads a dataset 6× the cache budget end to
// end through the daemon and checks its peak RSS against budget + 150 MiB.
// It is a bound, not a speed. With --passthrough the cached batches are
// memfds, outside the daemon's RSS: their peak counts too.
func TestMemoryStaysWithinBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: writes and reads ~400 MB")
	}
	const budget = 64 << 20
	data := t.TempDir()
	size := writeBlobs(t, filepath.Join(data, "blobs.arrow"), 6*budget/(64<<10), 64)
	for _, extra := range [][]string{nil, {"--passthrough"}} {
		t.Run(fmt.Sprint("flags=", extra), func(t *testing.T) {
			if len(extra) > 0 && os.Geteuid() != 0 {
				t.Skip("--passthrough needs root")
			}
			readWithinBudget(t, data, size, budget, extra)
		})
	}
}

func readWithinBudget(t *testing.T, data string, size, budget int64, extra []string) {
	args := append([]string{"--dataset", "blobs=" + data, "--batch-size", "32", "--cache-size", "64MiB", "--prefetch", "8"}, extra...)
	mnt := mountDaemon(t, args...)
	pid := daemonPid(t, mnt)
	ents, err := os.ReadDir(filepath.Join(mnt, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	var read int64
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".arrow") || strings.HasPrefix(e.Name(), "_") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(mnt, "blobs", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		read += int64(len(b))
	}
	if read < 5*budget {
		t.Fatalf("read only %d bytes; the test needs ≥ 5× the %d budget", read, budget)
	}
	rss := vmHWM(t, pid)
	var st struct {
		Memfds *struct {
			Made      uint64 `json:"made"`
			PeakTotal int64  `json:"peak_rss_plus_memfds_bytes"`
		} `json:"memfds"`
	}
	readStats(t, mnt, &st)
	peak := rss
	if len(extra) > 0 {
		if st.Memfds == nil || st.Memfds.Made == 0 || st.Memfds.PeakTotal == 0 {
			t.Fatalf("--passthrough made no memfd batches: %+v", st.Memfds)
		}
		peak = max(peak, st.Memfds.PeakTotal)
	}
	t.Logf("source %d MiB, read %d MiB through the mount, daemon peak RSS %d MiB, peak RSS + memfds %d MiB, budget %d MiB", size>>20, read>>20, rss>>20, peak>>20, budget>>20)
	if peak > budget+150<<20 {
		t.Fatalf("daemon peak memory %d MiB exceeds budget %d MiB + 150 MiB", peak>>20, budget>>20)
	}
	// The bound held with the heap on huge pages (internal/thp), unless the
	// system turns them off.
	if thp.Available() {
		n, err := thp.Marked(pid, "hg")
		if err != nil {
			t.Fatal(err)
		}
		if n < budget {
			t.Fatalf("the daemon advised %d MiB of its heap for huge pages, want ≥ the %d MiB budget", n>>20, budget>>20)
		}
	}
}
