package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSchedulingThroughMount drives the queue from a shell: GPU exclusivity,
// backfill, time limits and retries, each job submitted with echo.
func TestSchedulingThroughMount(t *testing.T) {
	jobs, _ := jobsMount(t, jobsSchedConfig(t, t.TempDir(), 2))
	dir := t.TempDir()
	waitFor := func(gate string) string { return fmt.Sprintf("while [ ! -e %s ]; do sleep 0.01; done", gate) }
	submit := func(name, script, extra string) {
		t.Helper()
		jobsMustEcho(t, jobs, fmt.Sprintf(`{"name":%q,"command":["sh","-c",%q]%s}`, name, script, extra))
	}

	t.Run("two 2-GPU jobs never overlap", func(t *testing.T) {
		for _, n := range []string{"big1", "big2"} {
			submit(n, fmt.Sprintf(`s=$(date +%%s%%N); sleep 0.3; echo "$s $(date +%%s%%N) $CUDA_VISIBLE_DEVICES" > %s/%s`, dir, n), `,"gpus":2`)
		}
		var iv [2][2]int64
		for i, n := range []string{"big1", "big2"} {
			jobsPoll(t, jobs, n, "COMPLETED", 10*time.Second)
			f := strings.Fields(string(jobsRead(t, filepath.Join(dir, n))))
			if len(f) != 3 || f[2] != "0,1" {
				t.Fatalf("%s wrote %q, want start, end, 0,1", n, f)
			}
			iv[i][0], _ = strconv.ParseInt(f[0], 10, 64)
			iv[i][1], _ = strconv.ParseInt(f[1], 10, 64)
		}
		if iv[0][0] < iv[1][1] && iv[1][0] < iv[0][1] {
			t.Fatalf("2-GPU jobs overlapped: %v", iv)
		}
	})

	t.Run("a 1-GPU job backfills while a 2-GPU job waits", func(t *testing.T) {
		gate := filepath.Join(dir, "gate-backfill")
		submit("one-a", waitFor(gate)+`; echo $CUDA_VISIBLE_DEVICES`, `,"gpus":1,"time_limit":"1h"`)
		jobsPoll(t, jobs, "one-a", "RUNNING", 5*time.Second)
		submit("two", "echo $CUDA_VISIBLE_DEVICES", `,"gpus":2`)
		submit("one-b", waitFor(gate)+`; echo $CUDA_VISIBLE_DEVICES`, `,"gpus":1,"time_limit":"10m"`)
		jobsPoll(t, jobs, "one-b", "RUNNING", 5*time.Second)
		if st := jobsCat(t, jobs, "two"); st != "PENDING\n" {
			t.Fatalf("2-GPU job is %q while both GPUs are held", st)
		}
		os.WriteFile(gate, nil, 0o644)
		for _, n := range []string{"one-a", "one-b", "two"} {
			jobsPoll(t, jobs, n, "COMPLETED", 5*time.Second)
		}
		a, b := string(jobsRead(t, filepath.Join(jobs, "one-a", "log"))), string(jobsRead(t, filepath.Join(jobs, "one-b", "log")))
		if a == b || (a != "0\n" && a != "1\n") || (b != "0\n" && b != "1\n") {
			t.Fatalf("concurrent jobs' CUDA_VISIBLE_DEVICES: %q and %q", a, b)
		}
		if two := string(jobsRead(t, filepath.Join(jobs, "two", "log"))); two != "0,1\n" {
			t.Fatalf("2-GPU job's CUDA_VISIBLE_DEVICES %q", two)
		}
	})

	t.Run("time limit kills the process tree", func(t *testing.T) {
		submit("slow", fmt.Sprintf("sleep 1000 & echo $! > %s/slow-child; wait", dir), `,"time_limit":"1s"`)
		jobsPoll(t, jobs, "slow", "TIMEOUT", 10*time.Second)
		child := strings.TrimSpace(string(jobsRead(t, filepath.Join(dir, "slow-child"))))
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, err := os.ReadFile("/proc/" + child + "/stat")
			if err != nil || strings.Contains(string(b), ") Z ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("child %s survived the time limit", child)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if r := jobsStatusJSON(t, jobs, "slow")["reason"]; !strings.Contains(fmt.Sprint(r), "time limit") {
			t.Fatalf("reason %v", r)
		}
	})

	t.Run("retries", func(t *testing.T) {
		submit("flaky", fmt.Sprintf(`n=$(cat %[1]s/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s/n; [ $n -ge 3 ]`, dir), `,"retries":2`)
		jobsPoll(t, jobs, "flaky", "COMPLETED", 10*time.Second)
		if a := jobsStatusJSON(t, jobs, "flaky")["attempts"]; a != 3.0 {
			t.Fatalf("attempts %v, want 3", a)
		}
	})
}
