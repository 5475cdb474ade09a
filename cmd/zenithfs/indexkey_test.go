package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zenithfs/zenithfs/internal/sampledata"
)

// TestPersistedIndexNamesArrowGo checks, on the built daemon (a test
// binary carries no module versions), that the batch sizes it persists
// are keyed by the arrow-go version that encoded them: a daemon built on
// another arrow-go must not trust them.
func TestPersistedIndexNamesArrowGo(t *testing.T) {
	data, state := t.TempDir(), t.TempDir()
	if err := sampledata.WriteParquet(filepath.Join(data, "a.parquet"), 3000, 1000); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	if r := zenith(t, "mount", "--state-dir", state, "--dataset", "d="+data, "--batch-size", "1000", "--gpus", "0", mnt); r.code != 0 {
		t.Fatalf("mount failed (%d): %s", r.code, r.stderr)
	}
	t.Cleanup(func() {
		if mounted(mnt) {
			zenith(t, "umount", mnt)
		}
	})
	if _, err := os.ReadFile(filepath.Join(mnt, "d", "000002.arrow")); err != nil {
		t.Fatal(err)
	}
	if r := zenith(t, "umount", mnt); r.code != 0 {
		t.Fatalf("umount failed (%d): %s", r.code, r.stderr)
	}
	var files []string
	_ = filepath.WalkDir(state, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Base(filepath.Dir(p)) == "batches" && strings.HasSuffix(p, ".json") {
			files = append(files, p)
		}
		return nil
	})
	if len(files) == 0 {
		t.Fatalf("no persisted batch index under %s", state)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var v struct{ Version string }
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if !strings.Contains(v.Version, "github.com/apache/arrow-go/v18@v18.") {
			t.Errorf("%s: version %q does not name the arrow-go version", p, v.Version)
		}
	}
}
