package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// TestRunAgainstARealMount runs every arm on tiny data through real
// zenithfs mounts and checks the report it writes.
func TestRunAgainstARealMount(t *testing.T) {
	benchkit.RequireRootFUSE(t, "zenithfs mounts with DirectMount")
	bin := benchkit.BuildZenithfs(t)
	work, out := t.TempDir(), t.TempDir()
	err := run(config{bin: bin, work: work, out: out, rows: 6000, rowGroup: 1000, batch: 256, reps: 1,
		workers: 2, prefetch: 4, cacheSize: "64MiB", seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), work) {
		t.Errorf("a mount under %s was left behind", work)
	}
	files, _ := filepath.Glob(filepath.Join(out, "views-*.md"))
	if len(files) != 1 {
		t.Fatalf("reports: %v", files)
	}
	b, _ := os.ReadFile(files[0])
	rep := string(b)
	for _, want := range []string{"**P6 = view ÷ natural = ", "| natural |", "| view |", "| block16 |", "| npz |", "| random |", "`seed=1,epoch=0,shuffle=block:4`"} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
}
