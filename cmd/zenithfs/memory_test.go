package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
			readWithinBudget(t, data, size, budget, extra, "")
		})
	}
	// A block shuffle holds whole blocks decoded: the largest block size
	// the budget allows stays within the bound too, and a larger one is
	// refused with the reason (before blocks were budgeted, block:64 held
	// two 128 MiB blocks beside the cache).
	t.Run("block shuffle", func(t *testing.T) {
		var extra []string
		if os.Geteuid() == 0 {
			extra = []string{"--passthrough"}
		}
		readWithinBudget(t, data, size, budget, extra, "seed=1,epoch=0,shuffle=block:64")
	})
}

// ranks read a block shuffle at once in readWithinBudget.
const ranks = 4

// readWithinBudget reads every batch file of the dataset and checks the
// daemon's peak memory. With tooBig set it reads block shuffles instead:
// it checks that the tooBig one is refused, reads the largest block size
// the budget allows, then has four ranks of a block shuffle half as big
// read their shares at once, as four trainers would.
func readWithinBudget(t *testing.T, data string, size, budget int64, extra []string, tooBig string) {
	args := append([]string{"--dataset", "blobs=" + data, "--batch-size", "32", "--cache-size", "64MiB", "--prefetch", "8"}, extra...)
	mnt := mountDaemon(t, args...)
	pid := daemonPid(t, mnt)
	root := filepath.Join(mnt, "blobs")
	if tooBig == "" {
		if n := readDirs(t, root); n < 5*budget {
			t.Fatalf("read only %d bytes; the test needs ≥ 5× the %d budget", n, budget)
		}
	} else {
		spec, k := largestBlocks(t, root, tooBig)
		if n := readDirs(t, filepath.Join(root, "views", spec)); n < 5*budget {
			t.Fatalf("read only %d bytes; the test needs ≥ 5× the %d budget", n, budget)
		}
		before := blockStats(t, mnt)
		half := strings.Replace(spec, fmt.Sprintf("block:%d", k), fmt.Sprintf("block:%d", max(k/2, 1)), 1)
		var dirs []string
		for r := range ranks {
			dirs = append(dirs, filepath.Join(root, "views", fmt.Sprintf("%s,rank=%d,world=%d", half, r, ranks)))
		}
		n := readDirs(t, dirs...)
		after := blockStats(t, mnt)
		// Each rank is its own view, and they share the built blocks.
		// Ranks that drift apart by more than the room allows build some
		// blocks again; each rank building every block was the old way.
		blocks := uint64(size / 32 / (64 << 10) / int64(max(k/2, 1)))
		builds := after.Builds - before.Builds
		t.Logf("%s: %d ranks read %d MiB; blocks built %d (the epoch has %d), held %d MiB of %d MiB",
			half, ranks, n>>20, builds, blocks, after.Bytes>>20, after.Max>>20)
		if after.Bytes > after.Max || builds < blocks || builds >= ranks*blocks/2 {
			t.Fatalf("%d ranks of a block shuffle of %d blocks: %d block builds, %d of %d bytes held", ranks, blocks, builds, after.Bytes, after.Max)
		}
	}
	rss := vmHWM(t, pid)
	var st struct {
		Memfds *struct {
			Made      uint64 `json:"made"`
			PeakTotal int64  `json:"peak_rss_plus_memfds_bytes"`
			Limit     int64  `json:"limit"`
		} `json:"memfds"`
		Cache struct {
			Budget int64 `json:"budget"`
			Max    int64 `json:"max"`
			Scan   bool  `json:"scan"`
		} `json:"cache"`
	}
	readStats(t, mnt, &st)
	// Reading 6× the budget in order never reads a cached batch again: the
	// cache of read batches shrank to an eighth (package cache), and with
	// passthrough its memfds are collected past that smaller share.
	if tooBig == "" {
		if !st.Cache.Scan || st.Cache.Max != st.Cache.Budget/8 {
			t.Fatalf("an in-order read of 6× the budget left the cache at %d of %d bytes (scan %v), want an eighth", st.Cache.Max, st.Cache.Budget, st.Cache.Scan)
		}
		if st.Memfds != nil && st.Memfds.Limit != st.Cache.Max+budget/4 {
			t.Fatalf("memfds collected past %d bytes, want the shrunk cache's %d + the prefetch share %d", st.Memfds.Limit, st.Cache.Max, budget/4)
		}
	}
	peak := rss
	if len(extra) > 0 {
		if st.Memfds == nil || st.Memfds.Made == 0 || st.Memfds.PeakTotal == 0 {
			t.Fatalf("--passthrough made no memfd batches: %+v", st.Memfds)
		}
		peak = max(peak, st.Memfds.PeakTotal)
	}
	t.Logf("source %d MiB, daemon peak RSS %d MiB, peak RSS + memfds %d MiB, budget %d MiB", size>>20, rss>>20, peak>>20, budget>>20)
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

// readDirs reads every batch file of dirs, one goroutine per directory,
// and returns the bytes read.
func readDirs(t *testing.T, dirs ...string) int64 {
	t.Helper()
	var read atomic.Int64
	var wg sync.WaitGroup
	for _, dir := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Error(err)
				return
			}
			for _, e := range ents {
				if !strings.HasSuffix(e.Name(), ".arrow") || strings.HasPrefix(e.Name(), "_") {
					continue
				}
				b, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if err != nil {
					t.Error(err)
					return
				}
				read.Add(int64(len(b)))
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return read.Load()
}

type blockCounters struct {
	Builds uint64 `json:"builds"`
	Bytes  int64  `json:"bytes"`
	Max    int64  `json:"max"`
}

// blockStats reads the blocks counters of .zenith/datasets/blobs.
func blockStats(t *testing.T, mnt string) blockCounters {
	t.Helper()
	var ds struct {
		Blocks *blockCounters `json:"blocks"`
	}
	b, err := os.ReadFile(filepath.Join(mnt, ".zenith", "datasets", "blobs"))
	if err == nil {
		err = json.Unmarshal(b, &ds)
	}
	if err != nil || ds.Blocks == nil {
		t.Fatalf(".zenith/datasets/blobs: %v\n%s", err, b)
	}
	return *ds.Blocks
}

// largestBlocks checks that the view tooBig is refused (EINVAL, with the
// largest block size that fits in .zenith/errors) and returns that view
// and its block size.
func largestBlocks(t *testing.T, dir, tooBig string) (string, int) {
	t.Helper()
	_, err := os.Stat(filepath.Join(dir, "views", tooBig))
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("stat views/%s: %v, want EINVAL", tooBig, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "..", ".zenith", "errors"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`use shuffle=block:(\d+) or less`).FindSubmatch(b)
	if m == nil {
		t.Fatalf(".zenith/errors says nothing of the largest block size:\n%s", b)
	}
	spec := regexp.MustCompile(`block:\d+`).ReplaceAllString(tooBig, "block:"+string(m[1]))
	if spec == tooBig {
		t.Fatalf("%s is refused, and .zenith/errors suggests it", tooBig)
	}
	k, _ := strconv.Atoi(string(m[1]))
	return spec, k
}
