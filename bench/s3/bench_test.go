package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// TestBenchmarkEndToEnd runs the whole benchmark on tiny datasets: a real
// versitygw, the real zenithfs binary, real mounts. It checks the report
// has every arm, and that an epoch fetched each byte exactly once.
func TestBenchmarkEndToEnd(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse: the benchmark mounts zenithfs")
	}
	if _, err := benchkit.FindVersitygw(); err != nil {
		t.Fatal(err) // CI installs it (scripts/setup.sh)
	}
	bin := benchkit.BuildZenithfs(t)
	out := t.TempDir()
	cfg := Config{
		Bin: bin, Data: t.TempDir(), Out: out, Work: t.TempDir(), Reps: 1, Prefetch: 4, CacheSize: "256MiB",
		Arms: []string{"zenithfs", "zenithfs-noprefetch", "baseline", "baseline-parallel"}, Date: "test",
		Kinds: []Kind{
			{Name: "table", Files: 2, Rows: 6000, RowGroup: 2500, Batch: 1000},
			{Name: "blobs", Files: 2, Rows: 40, RowGroup: 16, Batch: 8},
		},
	}
	if err := bench(cfg); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "s3-test.md"))
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, k := range []string{"table", "blobs"} {
		for _, arm := range cfg.Arms {
			// dataset | arm | epoch | rows/s | MiB/s | GETs | fetched ÷ dataset
			re := regexp.MustCompile(`\| ` + k + ` \| ` + arm + ` \| [0-9.]+ s \| [0-9]+ \| [0-9.]+ \| [0-9]+ \| ([0-9.]+) \|`)
			m := re.FindStringSubmatch(md)
			if m == nil {
				t.Fatalf("no epoch row for %s %s in:\n%s", k, arm, md)
			}
			// About each byte once; zenithfs skips the footers, which
			// its index keeps, so it may fetch slightly less than all. A
			// coalesced span can fetch again a row group a prefetch worker
			// read exactly while the span was being set up (a race between
			// concurrent builds: a few per cent of a small dataset).
			if x, err := strconv.ParseFloat(m[1], 64); err != nil || x > 1.1 || x < 0.9 {
				t.Errorf("%s %s: fetched %s × the dataset's bytes, want 0.9–1.1", k, arm, m[1])
			}
		}
	}
	if !strings.Contains(md, "| table | zenithfs | **") || !strings.Contains(md, "## Datasets and the first mount's index pass") {
		t.Fatalf("report lacks the ratio or the index pass:\n%s", md)
	}
	ents, _ := os.ReadDir(cfg.Work)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "mnt-") {
			if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), filepath.Join(cfg.Work, e.Name())) {
				t.Errorf("%s left mounted", e.Name())
			}
		}
	}
}
