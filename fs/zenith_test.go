package fs

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

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
	v, ok := st.Views["seed=9,epoch=2"]
	if !ok || v.Reads != 3 {
		t.Fatalf("views in .zenith/datasets/d: %s", b)
	}
}
