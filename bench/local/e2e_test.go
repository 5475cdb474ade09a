package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
)

// TestRunAgainstARealMount runs the whole benchmark, every arm, on tiny
// data through real zenithfs mounts, and checks the results it writes.
func TestRunAgainstARealMount(t *testing.T) {
	benchkit.RequireRootFUSE(t, "zenithfs mounts with DirectMount and the benchmark drops the page cache")
	bin := benchkit.BuildZenithfs(t)
	work, out, profiles := t.TempDir(), t.TempDir(), t.TempDir()
	err := cmdRun([]string{"-bin", bin, "-work", work, "-data", t.TempDir(), "-out", out, "-shm", t.TempDir(),
		"-rows", "20000", "-row-group", "5000", "-batch-size", "2000", "-sweep", "5000",
		"-blob-rows", "48", "-blob-row-group", "16", "-blob-batch-size", "8",
		"-reps", "1", "-p4-batches", "4", "-compute", "1ms", "-date", "test", "-profile", profiles})
	if err != nil {
		t.Fatal(err)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), work) {
		t.Errorf("a mount under %s was left behind", work)
	}

	var rep Report
	js, err := os.ReadFile(filepath.Join(out, "local-test.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Datasets) != 2 {
		t.Fatalf("%d datasets in the results, want 2", len(rep.Datasets))
	}
	wantFiles := map[Kind]int{KindTable: 10, KindBlobs: 6}
	for _, d := range rep.Datasets {
		if d.Files != wantFiles[d.Kind] {
			t.Errorf("%s: %d batch files, want %d", d.Kind, d.Files, wantFiles[d.Kind])
		}
		var ids []string
		for _, r := range d.Rows {
			ids = append(ids, r.ID)
			arms := 1
			if r.ID == "P3c" {
				arms = 2 // epochs 2 and 3
			}
			if len(r.ArmVals) != arms || len(r.BaseVals) != 1 || r.ArmVals[0] <= 0 && !r.Fraction {
				t.Errorf("%s %s: arm %v, baseline %v; want one positive value each", d.Kind, r.ID, r.ArmVals, r.BaseVals)
			}
		}
		if got := strings.Join(ids, ","); got != "P1,P2,P3,P3w,P3c,P4,uring" {
			t.Errorf("%s: rows %s", d.Kind, got)
		}
		p2, _ := findRow(d, "P2")
		if want := fmt.Sprintf("%d of %d opens served", d.Files, d.Files); !strings.Contains(p2.Note, want) {
			t.Errorf("%s: P2 was not served from the daemon's cache: %s", d.Kind, p2.Note)
		}
		u, _ := findRow(d, "uring")
		if !strings.Contains(u.Note, "io_uring_mode=on") || !strings.Contains(u.Note, "io_uring_mode=off") {
			t.Errorf("%s: the daemon's io_uring counters were not recorded: %s", d.Kind, u.Note)
		}
		for _, m := range d.Memory {
			if m.HWM <= 0 || m.Budget <= 0 {
				t.Errorf("%s: memory row %+v", d.Kind, m)
			}
		}
		if d.Kind == KindTable && (len(d.Sweep) != 1 || d.Sweep[0].BatchRows != 5000 || d.Sweep[0].Files != 4) {
			t.Errorf("table sweep: %+v", d.Sweep)
		}
		for _, arm := range []string{"p3-cold-epoch", "p2-cache-reads", "p4-consumer"} {
			fi, err := os.Stat(filepath.Join(profiles, string(d.Kind)+"-"+arm+".pprof"))
			if err != nil || fi.Size() == 0 {
				t.Errorf("%s: profile %s missing or empty: %v", d.Kind, arm, err)
			}
		}
	}
	for _, f := range []string{"local-test.md", "local-test.png"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s missing or empty: %v", f, err)
		}
	}
}
