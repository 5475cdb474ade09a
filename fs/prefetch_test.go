package fs

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/cache"
	"github.com/zenithfs/zenithfs/dataset"
	"github.com/zenithfs/zenithfs/internal/sampledata"
	"github.com/zenithfs/zenithfs/prefetch"
)

func prefetchMount(t *testing.T, depth int) (string, *prefetch.Store, *dataset.Dataset) {
	t.Helper()
	dir := t.TempDir()
	if err := sampledata.WriteParquet(filepath.Join(dir, "a.parquet"), 20000, 2000); err != nil {
		t.Fatal(err)
	}
	d := newDataset(t, "d", dir, 500)
	c, err := cache.New(256 << 20)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := prefetch.New(prefetch.Options{Cache: c, Workers: 2, Depth: depth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pf.Close(); c.Close() })
	stats := func() ([]byte, error) {
		b, err := json.Marshal(map[string]any{"prefetch": pf.Stats(), "cache": c.Stats()})
		return append(b, '\n'), err
	}
	return mountT(t, Config{Datasets: []*dataset.Dataset{d}, Batches: pf, Stats: stats}), pf, d
}

func readStats(t *testing.T, mnt string) prefetch.Stats {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mnt, ".zenith", "stats"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Prefetch prefetch.Stats `json:"prefetch"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("stats %s: %v", b, err)
	}
	return st.Prefetch
}

func TestSequentialReadThroughMountIsPrefetched(t *testing.T) {
	mnt, _, _ := prefetchMount(t, 4)
	for k := 0; k < 40; k++ {
		if _, err := os.ReadFile(filepath.Join(mnt, "d", batchName(k, 40))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // the trainer's step
	}
	st := readStats(t, mnt)
	if st.PrefetchHits+st.InflightHits < 20 {
		t.Fatalf("reading 40 batches in order gave %d prefetch hits (+%d in flight): %+v", st.PrefetchHits, st.InflightHits, st)
	}
	if st.Built != 40 {
		t.Fatalf("built %d batches for 40 files", st.Built)
	}
}

func TestTwoReadersOfOneBatchBuildItOnce(t *testing.T) {
	mnt, _, _ := prefetchMount(t, 0)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// separate processes, as two trainers would be
			if out, err := exec.Command("cat", filepath.Join(mnt, "d", "000007.arrow")).Output(); err != nil || len(out) == 0 {
				t.Errorf("cat: %v", err)
			}
		}()
	}
	wg.Wait()
	if st := readStats(t, mnt); st.Built != 1 {
		t.Fatalf("8 concurrent readers of one batch: built %d times", st.Built)
	}
}

func TestExitedReaderLosesItsSpeculativeWork(t *testing.T) {
	mnt, _, _ := prefetchMount(t, 16)
	// One process reads batch 0 and exits: its read-ahead is cancelled,
	// and nothing it left pending stays buffered.
	if err := exec.Command("cat", filepath.Join(mnt, "d", "000000.arrow")).Run(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := readStats(t, mnt)
		if st.Readers == 0 && st.Queued == 0 && st.PendingBatches == 0 {
			if st.Cancelled+st.Wasted == 0 {
				t.Fatalf("reader exited but no speculative work was cancelled or dropped: %+v", st)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("speculative work for an exited reader still held: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
