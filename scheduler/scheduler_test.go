package scheduler

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestJobLifecycleAndExitCodes(t *testing.T) {
	s := newTestScheduler(t, testConfig(t, 1))
	tests := []struct {
		name   string
		script string
		state  State
		code   int
		log    []string
	}{
		{"ok", "echo hello; echo to-stderr >&2", Completed, 0, []string{"hello\n", "to-stderr\n"}},
		{"exit3", "echo before; exit 3", Failed, 3, []string{"before\n"}},
		{"notfound", "exec /nonexistent/binary", Failed, 127, []string{"nonexistent"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gate := filepath.Join(t.TempDir(), "go")
			j := mustSubmit(t, s, shJob(t, tc.name, fmt.Sprintf("while [ ! -e %s ]; do sleep 0.01; done; %s", gate, tc.script), nil))
			if j.State != Pending {
				t.Fatalf("state right after submit = %s, want PENDING", j.State)
			}
			j = waitState(t, s, tc.name, Running, 5*time.Second)
			if j.PID <= 0 || j.Attempts != 1 || j.StartTime.IsZero() {
				t.Fatalf("running job: pid %d attempts %d start %v", j.PID, j.Attempts, j.StartTime)
			}
			if err := os.WriteFile(gate, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			j = waitState(t, s, tc.name, tc.state, 5*time.Second)
			if j.ExitCode == nil || *j.ExitCode != tc.code {
				t.Fatalf("exit code = %v, want %d", j.ExitCode, tc.code)
			}
			if j.EndTime.IsZero() {
				t.Fatal("no end time")
			}
			log := readLog(t, j)
			for _, want := range tc.log {
				if !strings.Contains(log, want) {
					t.Errorf("log %q lacks %q", log, want)
				}
			}
		})
	}
}

func TestLogGrowsWhileJobRuns(t *testing.T) {
	s := newTestScheduler(t, testConfig(t, 0))
	gate := filepath.Join(t.TempDir(), "gate")
	mustSubmit(t, s, shJob(t, "stream", fmt.Sprintf("echo early; while [ ! -e %s ]; do sleep 0.01; done; echo late", gate), nil))
	j := waitState(t, s, "stream", Running, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if b, _ := os.ReadFile(j.LogPath); string(b) == "early\n" {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(j.LogPath)
			t.Fatalf("log of the running job = %q, want \"early\\n\" (output must not wait in a buffer)", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	os.WriteFile(gate, nil, 0o644)
	j = waitState(t, s, "stream", Completed, 5*time.Second)
	if log := readLog(t, j); log != "early\nlate\n" {
		t.Fatalf("log = %q", log)
	}
}

func TestEnvironmentAndLiteralArgv(t *testing.T) {
	cfg := testConfig(t, 0)
	s := newTestScheduler(t, cfg)
	dir := t.TempDir()
	// Not a shell job: metacharacters reach the program literally.
	j := mustSubmit(t, s, spec(t, map[string]any{
		"name":    "env",
		"command": []string{"/bin/sh", "-c", `printf '%s|' "$CUDA_VISIBLE_DEVICES" "$CUDA_DEVICE_ORDER" "$ZENITH_JOB_NAME" "$ZENITH_MOUNT" "$MY_VAR" "$(pwd)"; printf '%s ' "$@"`, "x", "a;b", "$(id)", "|", "*"},
		"env":     map[string]string{"MY_VAR": "v 1"},
		"workdir": dir,
	}))
	j = waitState(t, s, j.Name, Completed, 5*time.Second)
	want := "|PCI_BUS_ID|env|/mnt/zenith-test|v 1|" + dir + "|" + "a;b $(id) | * "
	if got := readLog(t, j); got != want {
		t.Fatalf("log = %q, want %q", got, want)
	}
}

func TestTwoGPUJobsNeverOverlap(t *testing.T) {
	s := newTestScheduler(t, testConfig(t, 2))
	dir := t.TempDir()
	script := func(name string) string {
		return fmt.Sprintf(`s=$(date +%%s%%N); echo "$CUDA_VISIBLE_DEVICES" > %[1]s/%[2]s.cvd; sleep 0.3; e=$(date +%%s%%N); echo "$s $e" > %[1]s/%[2]s.t`, dir, name)
	}
	for _, n := range []string{"big1", "big2"} {
		mustSubmit(t, s, shJob(t, n, script(n), map[string]any{"gpus": 2}))
	}
	for _, n := range []string{"big1", "big2"} {
		waitState(t, s, n, Completed, 10*time.Second)
	}
	a, b := readInterval(t, dir, "big1"), readInterval(t, dir, "big2")
	if a.start < b.end && b.start < a.end {
		t.Fatalf("2-GPU jobs overlapped: %v and %v", a, b)
	}
	for _, n := range []string{"big1", "big2"} {
		if cvd := waitFile(t, filepath.Join(dir, n+".cvd"), time.Second); cvd != "0,1" {
			t.Errorf("%s CUDA_VISIBLE_DEVICES = %q, want 0,1", n, cvd)
		}
	}

	// Two 1-GPU jobs run at the same time on disjoint GPUs.
	gate := filepath.Join(dir, "gate")
	for _, n := range []string{"one1", "one2"} {
		mustSubmit(t, s, shJob(t, n, fmt.Sprintf(`echo "$CUDA_VISIBLE_DEVICES" > %s/%s.cvd; while [ ! -e %s ]; do sleep 0.01; done`, dir, n, gate), map[string]any{"gpus": 1}))
	}
	waitState(t, s, "one1", Running, 5*time.Second)
	waitState(t, s, "one2", Running, 5*time.Second)
	c1, c2 := waitFile(t, filepath.Join(dir, "one1.cvd"), 5*time.Second), waitFile(t, filepath.Join(dir, "one2.cvd"), 5*time.Second)
	if c1 == c2 || (c1 != "0" && c1 != "1") || (c2 != "0" && c2 != "1") {
		t.Fatalf("concurrent 1-GPU jobs got CUDA_VISIBLE_DEVICES %q and %q", c1, c2)
	}
	held := map[string]bool{}
	for _, g := range s.GPUs() {
		held[g.Job] = true
	}
	if !held["one1"] || !held["one2"] {
		t.Fatalf("GPUs() = %+v, want one1 and one2 holding", s.GPUs())
	}
	os.WriteFile(gate, nil, 0o644)
	waitState(t, s, "one1", Completed, 5*time.Second)
	waitState(t, s, "one2", Completed, 5*time.Second)
	for _, g := range s.GPUs() {
		if g.Job != "" {
			t.Fatalf("GPU %d still held by %s after all jobs ended", g.Index, g.Job)
		}
	}
}

func TestBackfillAndPriority(t *testing.T) {
	s := newTestScheduler(t, testConfig(t, 2))
	dir := t.TempDir()
	gateA, gateC := filepath.Join(dir, "a"), filepath.Join(dir, "c")
	wait := func(gate string) string { return fmt.Sprintf("while [ ! -e %s ]; do sleep 0.01; done", gate) }
	mustSubmit(t, s, shJob(t, "small-a", wait(gateA), map[string]any{"gpus": 1, "time_limit": "1h"}))
	waitState(t, s, "small-a", Running, 5*time.Second)
	mustSubmit(t, s, shJob(t, "big", "true", map[string]any{"gpus": 2}))
	// No time limit: it could delay "big" forever, so it must not backfill.
	mustSubmit(t, s, shJob(t, "unbounded", "true", map[string]any{"gpus": 1}))
	// Ends (by its limit) before small-a can: it may backfill.
	mustSubmit(t, s, shJob(t, "small-c", wait(gateC), map[string]any{"gpus": 1, "time_limit": "10m"}))
	waitState(t, s, "small-c", Running, 5*time.Second)
	time.Sleep(200 * time.Millisecond)
	for _, n := range []string{"big", "unbounded"} {
		if j, _ := s.Job(n); j.State != Pending {
			t.Fatalf("%s is %s, want PENDING", n, j.State)
		}
	}
	os.WriteFile(gateA, nil, 0o644)
	os.WriteFile(gateC, nil, 0o644)
	big := waitState(t, s, "big", Completed, 5*time.Second)
	un := waitState(t, s, "unbounded", Completed, 5*time.Second)
	if un.StartTime.Before(big.StartTime) {
		t.Fatalf("unbounded started %v before big %v", un.StartTime, big.StartTime)
	}

	// Priority: while both GPUs are busy, a later high-priority job queues
	// ahead of an earlier low-priority one.
	gate := filepath.Join(dir, "hold")
	mustSubmit(t, s, shJob(t, "hold", wait(gate), map[string]any{"gpus": 2}))
	waitState(t, s, "hold", Running, 5*time.Second)
	mustSubmit(t, s, shJob(t, "low", "sleep 0.1", map[string]any{"gpus": 2}))
	mustSubmit(t, s, shJob(t, "high", "sleep 0.1", map[string]any{"gpus": 2, "priority": 5}))
	os.WriteFile(gate, nil, 0o644)
	low := waitState(t, s, "low", Completed, 5*time.Second)
	high := waitState(t, s, "high", Completed, 5*time.Second)
	if !high.StartTime.Before(low.StartTime) {
		t.Fatalf("high priority started %v, after low %v", high.StartTime, low.StartTime)
	}
}

// treeJob starts a background child and records its pid, so tests can check
// the whole process tree dies.
func treeJob(dir, extra string) string {
	return fmt.Sprintf(`%s sleep 1000 & echo $! > %s/child.pid; wait`, extra, dir)
}

func TestCancelAndTimeLimitKillTheTree(t *testing.T) {
	tests := []struct {
		name   string
		extra  map[string]any
		prefix string // shell code before the child starts
		cancel bool
		want   State
	}{
		{"cancel", nil, "", true, Cancelled},
		{"cancel-ignores-term", nil, `trap "" TERM;`, true, Cancelled},
		{"timeout", map[string]any{"time_limit": "1s"}, "", false, Timeout},
	}
	s := newTestScheduler(t, testConfig(t, 1))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mustSubmit(t, s, shJob(t, tc.name, treeJob(dir, tc.prefix), tc.extra))
			waitState(t, s, tc.name, Running, 5*time.Second)
			child, err := strconv.Atoi(waitFile(t, filepath.Join(dir, "child.pid"), 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if tc.cancel {
				if err := s.Cancel(tc.name); err != nil {
					t.Fatal(err)
				}
			}
			j := waitState(t, s, tc.name, tc.want, 10*time.Second)
			waitGone(t, child, 5*time.Second)
			if j.Reason == "" {
				t.Error("no reason recorded")
			}
			if g := s.GPUs()[0]; g.Job != "" {
				t.Errorf("GPU still held by %s", g.Job)
			}
		})
	}
}

func TestCancelPendingAndUnknown(t *testing.T) {
	s := newTestScheduler(t, testConfig(t, 1))
	gate := filepath.Join(t.TempDir(), "gate")
	mustSubmit(t, s, shJob(t, "hold", fmt.Sprintf("while [ ! -e %s ]; do sleep 0.01; done", gate), map[string]any{"gpus": 1}))
	mustSubmit(t, s, shJob(t, "queued", "true", map[string]any{"gpus": 1}))
	if err := s.Cancel("queued"); err != nil {
		t.Fatal(err)
	}
	if j, _ := s.Job("queued"); j.State != Cancelled || j.Attempts != 0 {
		t.Fatalf("pending job after cancel: %s, %d attempts", j.State, j.Attempts)
	}
	if err := s.Cancel("nope"); !errorsIs(err, ErrNotFound) {
		t.Fatalf("cancel unknown: %v, want ErrNotFound", err)
	}
	os.WriteFile(gate, nil, 0o644)
	waitState(t, s, "hold", Completed, 5*time.Second)
	if err := s.Cancel("hold"); err != nil {
		t.Fatalf("cancel of a finished job: %v, want nil", err)
	}
}

// Remove refuses active and unknown jobs; a removed job's name can be
// submitted again, and its exit files go with its log.
func TestRemove(t *testing.T) {
	s := newTestScheduler(t, testConfig(t, 1))
	gate := filepath.Join(t.TempDir(), "gate")
	mustSubmit(t, s, shJob(t, "hold", fmt.Sprintf("while [ ! -e %s ]; do sleep 0.01; done", gate), map[string]any{"gpus": 1}))
	mustSubmit(t, s, shJob(t, "queued", "true", map[string]any{"gpus": 1}))
	waitState(t, s, "hold", Running, 5*time.Second)
	for _, name := range []string{"hold", "queued"} {
		if err := s.Remove(name); !errorsIs(err, ErrActive) {
			t.Fatalf("remove %s (active): %v, want ErrActive", name, err)
		}
	}
	if err := s.Remove("nope"); !errorsIs(err, ErrNotFound) {
		t.Fatalf("remove unknown: %v, want ErrNotFound", err)
	}
	if err := s.Cancel("queued"); err != nil {
		t.Fatal(err)
	}
	old, _ := s.Job("queued")
	if err := s.Remove("queued"); err != nil {
		t.Fatalf("remove a cancelled job: %v", err)
	}
	if _, ok := s.Job("queued"); ok {
		t.Fatal("removed job still listed")
	}
	j := mustSubmit(t, s, shJob(t, "queued", "echo again", map[string]any{"gpus": 1}))
	if j.Seq <= old.Seq || j.State != Pending {
		t.Fatalf("resubmitted: seq %d (removed %d), state %s", j.Seq, old.Seq, j.State)
	}
	os.WriteFile(gate, nil, 0o644)
	hold := waitState(t, s, "hold", Completed, 5*time.Second)
	waitState(t, s, "queued", Completed, 5*time.Second)
	exits, _ := filepath.Glob(filepath.Join(filepath.Dir(hold.LogPath), ".hold.*.exit"))
	if len(exits) == 0 {
		t.Fatal("the local runner left no exit file beside the log")
	}
	if err := s.Remove("hold"); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(hold.LogPath), "*hold*"))
	if len(left) > 0 {
		t.Fatalf("files left after remove: %v (exit files before: %v)", left, exits)
	}
	if got := s.Names(); len(got) != 1 || got[0] != "queued" {
		t.Fatalf("jobs = %v", got)
	}
}

// A removed job's sequence number is never handed out again, even when it
// was the highest and another job was written after it; removing a job
// leaves the exit files of a job whose name extends it with a dot.
func TestRemovedJobsNumberAndNeighbours(t *testing.T) {
	cfg := testConfig(t, 0)
	s := newTestScheduler(t, cfg)
	gate := filepath.Join(t.TempDir(), "gate")
	a := mustSubmit(t, s, shJob(t, "a", fmt.Sprintf("while [ ! -e %s ]; do sleep 0.01; done", gate), nil))
	b := mustSubmit(t, s, shJob(t, "a.1", "true", nil))
	waitState(t, s, "a.1", Completed, 5*time.Second)
	os.WriteFile(gate, nil, 0o644)
	waitState(t, s, "a", Completed, 5*time.Second) // written after a.1, with the lower number
	b2, _ := s.Job("a.1")
	if len(exitFiles(b2.LogPath)) == 0 {
		t.Fatal("no exit file of a.1 to keep: the test proves nothing")
	}
	if err := s.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if len(exitFiles(b2.LogPath)) == 0 {
		t.Fatal("removing a took a.1's exit file")
	}
	if err := s.Remove("a.1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := newTestScheduler(t, cfg)
	c := mustSubmit(t, s2, shJob(t, "c", "true", nil))
	if c.Seq <= b.Seq || c.Seq <= a.Seq {
		t.Fatalf("after removals and a restart the next job got seq %d; removed jobs had %d and %d", c.Seq, a.Seq, b.Seq)
	}
	if c.LogPath == b.LogPath || c.LogPath == a.LogPath {
		t.Fatalf("log path %s reused", c.LogPath)
	}
}

func TestRetries(t *testing.T) {
	s := newTestScheduler(t, testConfig(t, 0))
	dir := t.TempDir()
	// Fails twice, succeeds on the third attempt.
	flaky := fmt.Sprintf(`n=$(cat %[1]s/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s/n; echo "attempt $n"; [ $n -ge 3 ]`, dir)
	mustSubmit(t, s, shJob(t, "flaky", flaky, map[string]any{"retries": 2}))
	j := waitState(t, s, "flaky", Completed, 10*time.Second)
	if j.Attempts != 3 || *j.ExitCode != 0 {
		t.Fatalf("attempts %d exit %d, want 3 and 0", j.Attempts, *j.ExitCode)
	}
	log := readLog(t, j)
	for _, w := range []string{"attempt 1\n", "attempt 3\n", "[zenithfs: attempt 3]"} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q:\n%s", w, log)
		}
	}
	mustSubmit(t, s, shJob(t, "broken", "exit 2", map[string]any{"retries": 1}))
	j = waitState(t, s, "broken", Failed, 10*time.Second)
	if j.Attempts != 2 || *j.ExitCode != 2 {
		t.Fatalf("attempts %d exit %d, want 2 and 2", j.Attempts, *j.ExitCode)
	}
}

func TestLogCapNeverBlocks(t *testing.T) {
	cfg := testConfig(t, 0)
	cfg.LogCap = 1000
	s := newTestScheduler(t, cfg)
	// 64 MiB of output: far past the pipe buffer and the cap.
	mustSubmit(t, s, shJob(t, "chatty", "echo first; head -c 67108864 /dev/zero | tr '\\0' x; echo; echo last", nil))
	j := waitState(t, s, "chatty", Completed, 30*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	var log string
	for { // the copier finishes its note just after the job
		log = readLog(t, j)
		if strings.Contains(log, "bytes dropped]") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(log, "first\nxxx") {
		t.Fatalf("log starts %q", log[:min(len(log), 20)])
	}
	if len(log) > 1300 {
		t.Fatalf("log is %d bytes, cap 1000", len(log))
	}
	if !strings.Contains(log, "cap of 1000 bytes") || !strings.Contains(log, "bytes dropped]") || strings.Contains(log, "last") {
		t.Fatalf("truncation not noted right:\n%s", log[990:])
	}
}

func TestCloseStopsRunningKeepsPending(t *testing.T) {
	cfg := testConfig(t, 1)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mustSubmit(t, s, shJob(t, "run", treeJob(dir, ""), map[string]any{"gpus": 1}))
	waitState(t, s, "run", Running, 5*time.Second)
	child, _ := strconv.Atoi(waitFile(t, filepath.Join(dir, "child.pid"), 5*time.Second))
	mustSubmit(t, s, shJob(t, "next", "echo next-ran", map[string]any{"gpus": 1}))
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitGone(t, child, 5*time.Second)

	s2 := newTestScheduler(t, cfg)
	j, _ := s2.Job("run")
	if j.State != Cancelled || j.Reason != "daemon shutdown" {
		t.Fatalf("running job after Close: %s %q, want CANCELLED \"daemon shutdown\"", j.State, j.Reason)
	}
	j = waitState(t, s2, "next", Completed, 5*time.Second)
	if log := readLog(t, j); log != "next-ran\n" {
		t.Fatalf("log = %q", log)
	}
}

func TestRestartAdoptsOrMarksLost(t *testing.T) {
	cfg := testConfig(t, 1)
	cfg.LeaveRunning = true // as if the daemon died
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	mustSubmit(t, s, shJob(t, "adoptee", fmt.Sprintf("echo started; while [ ! -e %s ]; do sleep 0.01; done; echo finished; exit 7", gate), map[string]any{"gpus": 1}))
	mustSubmit(t, s, shJob(t, "victim", "echo $$ > "+dir+"/victim.pid; exec sleep 1000", nil))
	mustSubmit(t, s, shJob(t, "waiting", "echo waited", map[string]any{"gpus": 1}))
	waitState(t, s, "adoptee", Running, 5*time.Second)
	victim, _ := strconv.Atoi(waitFile(t, filepath.Join(dir, "victim.pid"), 5*time.Second))
	waitState(t, s, "victim", Running, 5*time.Second)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// While the daemon is down, the victim's process vanishes (SIGKILL: no
	// exit status recorded) and the adoptee keeps writing its log.
	j, _ := s.Job("victim")
	if err := killGroup(j.PID); err != nil {
		t.Fatal(err)
	}
	waitGone(t, victim, 5*time.Second)
	waitGone(t, j.PID, 5*time.Second)

	s2 := newTestScheduler(t, cfg)
	if j := waitState(t, s2, "victim", Lost, 5*time.Second); !strings.Contains(j.Reason, "gone") {
		t.Fatalf("lost reason %q", j.Reason)
	}
	a, _ := s2.Job("adoptee")
	if a.State != Running || s2.GPUs()[0].Job != "adoptee" {
		t.Fatalf("adoptee after restart: %s, GPU held by %q", a.State, s2.GPUs()[0].Job)
	}
	if w, _ := s2.Job("waiting"); w.State != Pending {
		t.Fatalf("waiting job is %s, want PENDING", w.State)
	}
	os.WriteFile(gate, nil, 0o644)
	a = waitState(t, s2, "adoptee", Failed, 5*time.Second)
	if *a.ExitCode != 7 {
		t.Fatalf("adopted exit code %d, want 7", *a.ExitCode)
	}
	w := waitState(t, s2, "waiting", Completed, 5*time.Second)
	deadline := time.Now().Add(3 * time.Second)
	for readLog(t, a) != "started\nfinished\n" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if log := readLog(t, a); log != "started\nfinished\n" {
		t.Fatalf("adoptee log %q", log)
	}
	if log := readLog(t, w); log != "waited\n" {
		t.Fatalf("waiting log %q", log)
	}
}

func TestHeartbeatMarksVanishedRunLost(t *testing.T) {
	s := newTestScheduler(t, testConfig(t, 0))
	mustSubmit(t, s, shJob(t, "gone", "exec sleep 1000", nil))
	j := waitState(t, s, "gone", Running, 5*time.Second)
	// A runner that forgot the attempt (as after a restart) finds the
	// process gone by pid + start time.
	s.mu.Lock()
	lr, _ := parseLocalRef(s.jobs["gone"].Ref)
	lr.start++ // the pid now "belongs" to another process
	s.jobs["gone"].Ref = lr.encode()
	s.mu.Unlock()
	j = waitState(t, s, "gone", Lost, 5*time.Second)
	killGroup(j.PID)
}

// A job queued on a daemon with more GPUs than the next one has could
// never start there: it fails at the restart with the reason, and the
// queue behind it runs.
func TestRestartWithFewerGPUsFailsJobsThatCannotFit(t *testing.T) {
	cfg := testConfig(t, 4)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustSubmit(t, s, shJob(t, "hold", "sleep 30", map[string]any{"gpus": 1}))
	waitState(t, s, "hold", Running, 5*time.Second)
	mustSubmit(t, s, shJob(t, "big", "true", map[string]any{"gpus": 4}))
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	two := testConfig(t, 2)
	cfg.GPUs = two.GPUs
	s2 := newTestScheduler(t, cfg)
	if j := waitState(t, s2, "big", Failed, 5*time.Second); !strings.Contains(j.Reason, "needs 4 GPUs") {
		t.Fatalf("big after a restart with 2 GPUs: reason %q", j.Reason)
	}
	mustSubmit(t, s2, shJob(t, "small", "echo ran", map[string]any{"gpus": 1}))
	waitState(t, s2, "small", Completed, 5*time.Second)
}

// A second Close (the daemon's deferred one, after the unmount path closed
// the scheduler first) returns only once the first has stopped the jobs:
// a daemon exiting earlier would leave a job that ignores SIGTERM running.
func TestSecondCloseWaitsForTheFirst(t *testing.T) {
	s := newTestScheduler(t, testConfig(t, 0))
	mustSubmit(t, s, shJob(t, "stubborn", "trap '' TERM; while :; do sleep 0.05; done", nil))
	j := waitState(t, s, "stubborn", Running, 5*time.Second)
	time.Sleep(200 * time.Millisecond) // the shell has set its trap
	ctx := context.Background()
	first := make(chan struct{})
	go func() { s.Close(ctx); close(first) }()
	for !s.isClosed() {
		time.Sleep(5 * time.Millisecond)
	}
	s.Close(ctx)
	// When the second Close returns, the job the first was stopping is
	// gone (it ignored SIGTERM: only the SIGKILL after the grace ends it).
	if !processGone(j.PID) {
		t.Fatalf("the second Close returned while job pid %d still ran", j.PID)
	}
	select {
	case <-first:
	case <-time.After(5 * time.Second):
		t.Fatal("the first Close never returned")
	}
}

func (s *Scheduler) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// A held scheduler starts no job until Start (the daemon starts it once
// its mount is up).
func TestHeldSchedulerStartsNothingBeforeStart(t *testing.T) {
	cfg := testConfig(t, 0)
	cfg.Held = true
	s := newTestScheduler(t, cfg)
	mustSubmit(t, s, shJob(t, "early", "true", nil))
	time.Sleep(300 * time.Millisecond)
	if j, _ := s.Job("early"); j.State != Pending {
		t.Fatalf("job %s before Start, want PENDING", j.State)
	}
	s.Start()
	s.Start() // again: nothing
	waitState(t, s, "early", Completed, 5*time.Second)
}
