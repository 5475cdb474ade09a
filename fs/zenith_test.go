package fs

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/dataset"
	"github.com/zenithfs/zenithfs/internal/sampledata"
)

func TestDatasetStateReportsViews(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteCSV(filepath.Join(dir, "a.csv"), 0, 100); err != nil {
		t.Fatal(err)
	}
	d := newDataset(t, "d", dir, 10)
	mnt := mountT(t, Config{Datasets: []*dataset.Dataset{d}})
	for k := 0; k < 3; k++ {
		if _, err := os.ReadFile(filepath.Join(mnt, "d", "views", "epoch=2,seed=9", batchName(k, 10))); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(mnt, ".zenith", "datasets", "d"))
	if err != nil {
		t.Fatal(err)
	}
	var st DatasetState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if st.State != "ready" || st.Rows != 100 || st.Batches != 10 {
		t.Fatalf("state %+v", st)
	}
	if ix := st.Index; ix.Running || ix.FilesDone != 1 || ix.FilesTotal != 1 || ix.BatchesDone != 10 || ix.BatchesTotal != 10 {
		t.Fatalf("index progress %+v, want a finished pass over 1 file and 10 batches", ix)
	}
	v, ok := st.Views["seed=9,epoch=2"]
	if !ok || v.Reads != 3 {
		t.Fatalf("views in .zenith/datasets/d: %s", b)
	}
}

// A generated file's stat tells the size of its content now, not as it was
// at the first lookup (go-fuse's default lookup of fixed children keeps the
// mount's hour-long attribute timeout).
func TestGeneratedFilesStatTheirCurrentSize(t *testing.T) {
	dir := t.TempDir()
	if err := sampledata.WriteCSV(filepath.Join(dir, "a.csv"), 0, 100); err != nil {
		t.Fatal(err)
	}
	d := newDataset(t, "d", dir, 10)
	mnt := mountT(t, Config{Datasets: []*dataset.Dataset{d}})
	files := []string{".zenith/errors", ".zenith/datasets/d", "d/views/_stats.json", "d/_manifest.json"}
	sameSize := func(when string) {
		t.Helper()
		time.Sleep(20 * time.Millisecond)
		for _, f := range files {
			p := filepath.Join(mnt, f)
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != int64(len(b)) {
				t.Errorf("%s: stat of %s says %d bytes, its content is %d", when, f, fi.Size(), len(b))
			}
		}
	}
	errs := filepath.Join(mnt, ".zenith", "errors")
	if fi, err := os.Stat(errs); err != nil || fi.Size() != 0 {
		t.Fatalf("stat of .zenith/errors before any error: %v, %v", fi, err)
	}
	// stat with no read in between (a read has the kernel ask again
	// anyway), after the shortest attribute timeout the kernel keeps (a
	// nanosecond is rounded up to a jiffy, ≤ 10 ms)
	if _, err := os.Stat(filepath.Join(mnt, "d", "views", "seed=x")); err == nil {
		t.Fatal("a bad view spec was accepted")
	}
	time.Sleep(20 * time.Millisecond)
	if fi, err := os.Stat(errs); err != nil || fi.Size() == 0 {
		t.Errorf("stat of .zenith/errors after a rejected view spec: %v, %v; want a size", fi, err)
	}
	sameSize("at first")
	for k := 0; k < 4; k++ {
		if _, err := os.ReadFile(filepath.Join(mnt, "d", "views", "seed=3,epoch=1", batchName(k, 10))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(mnt, "d", "views", "seed=x")); err == nil {
		t.Fatal("a bad view spec was accepted")
	}
	sameSize("after reads and an error")
}
