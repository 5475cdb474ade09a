package slurm

// These tests run real jobs on the single-node Slurm that
// scripts/slurm-up.sh starts (4 placeholder GPUs, 8 CPUs). They fail, with
// that instruction, when no Slurm controller answers.
//
// TestGPUPlacement needs all four GPUs and runs first, alone (it is not
// parallel); the other tests ask for no GPUs and run in parallel after it.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/scheduler"
)

var (
	pingOnce sync.Once
	pingErr  error
)

// slurmRunner returns a Runner on the local Slurm, failing the test with
// instructions when Slurm is not up.
func slurmRunner(t *testing.T, cfg Config) *Runner {
	t.Helper()
	pingOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pingErr = New(Config{CommandTimeout: 5 * time.Second}).Ping(ctx)
	})
	if pingErr != nil {
		t.Fatalf("no Slurm controller answers (%v): run scripts/slurm-up.sh (as root) first", pingErr)
	}
	return New(cfg)
}

// newRequest returns a request with a unique job name and its log in a
// temporary directory.
func newRequest(t *testing.T, command ...string) scheduler.RunRequest {
	t.Helper()
	dir := t.TempDir()
	name := fmt.Sprintf("t%d-%s", time.Now().UnixNano()%1e9, strings.ReplaceAll(t.Name(), "/", "."))
	if len(name) > 64 {
		name = name[:64]
	}
	return scheduler.RunRequest{
		Name:       name,
		Attempt:    1,
		Command:    command,
		LogPath:    filepath.Join(dir, "log"),
		Workdir:    dir,
		MountPoint: "/mnt/zenith-test",
	}
}

func start(t *testing.T, r *Runner, req scheduler.RunRequest) scheduler.RunRef {
	t.Helper()
	ref, err := r.Start(context.Background(), req)
	if err != nil {
		t.Fatalf("start %s: %v", req.Name, err)
	}
	t.Cleanup(func() { _ = r.Cancel(context.Background(), ref, 0) })
	return ref
}

func poll(t *testing.T, r *Runner, ref scheduler.RunRef) scheduler.RunStatus {
	t.Helper()
	st, err := r.Poll(context.Background(), ref)
	if err != nil {
		t.Fatalf("poll %s: %v", ref, err)
	}
	return st
}

// waitFor polls until cond holds, failing after timeout with the last status.
func waitFor(t *testing.T, r *Runner, ref scheduler.RunRef, timeout time.Duration, what string,
	cond func(scheduler.RunStatus) bool) scheduler.RunStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := poll(t, r, ref)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: not %s after %v; last status %+v", ref, what, timeout, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitState(t *testing.T, r *Runner, ref scheduler.RunRef, want scheduler.State, timeout time.Duration) scheduler.RunStatus {
	t.Helper()
	return waitFor(t, r, ref, timeout, string(want), func(st scheduler.RunStatus) bool {
		if st.State.Terminal() && st.State != want {
			t.Fatalf("job %s ended %s (%s), want %s", ref, st.State, st.Reason, want)
		}
		return st.State == want
	})
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read job log: %v", err)
	}
	return string(b)
}

// logValue returns the value of "KEY=value" on its own line of the log.
func logValue(log, key string) (string, bool) {
	for _, line := range strings.Split(log, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// TestGPUPlacement: on the 4-GPU node two 2-GPU jobs run together, a third
// waits for Resources, and each job's CUDA_VISIBLE_DEVICES / SLURM_JOB_GPUS
// are exactly the GPUs Poll reports, disjoint between the two.
func TestGPUPlacement(t *testing.T) {
	r := slurmRunner(t, Config{})
	stop := filepath.Join(t.TempDir(), "stop")
	script := `echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES; echo SLURM_JOB_GPUS=$SLURM_JOB_GPUS; ` +
		`while [ ! -e "$STOP" ]; do sleep 0.2; done`
	var reqs []scheduler.RunRequest
	var refs []scheduler.RunRef
	for i := 0; i < 3; i++ {
		req := newRequest(t, "sh", "-c", script)
		req.Name = fmt.Sprintf("%s-%d", req.Name[:min(len(req.Name), 60)], i)
		req.GPUCount = 2
		req.Env = map[string]string{"STOP": stop}
		reqs = append(reqs, req)
		refs = append(refs, start(t, r, req))
		if i == 1 {
			// The third job is submitted once the first two hold the GPUs.
			for j := 0; j < 2; j++ {
				waitState(t, r, refs[j], scheduler.Running, 60*time.Second)
			}
		}
	}

	var held [][]int
	for i := 0; i < 2; i++ {
		st := waitState(t, r, refs[i], scheduler.Running, 30*time.Second)
		if len(st.GPUs) != 2 {
			t.Fatalf("job %d holds GPUs %v, want 2", i, st.GPUs)
		}
		held = append(held, st.GPUs)
		// The job prints its environment first thing; wait for it.
		var log string
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(log, "SLURM_JOB_GPUS=") && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			log, _ = readFileIfExists(reqs[i].LogPath)
		}
		for _, key := range []string{"CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS"} {
			if v, ok := logValue(log, key); !ok || v != joinInts(st.GPUs) {
				t.Errorf("job %d: %s=%q, but Slurm allocated %v\nlog:\n%s", i, key, v, st.GPUs, log)
			}
		}
	}
	for _, g := range held[0] {
		if slices.Contains(held[1], g) {
			t.Errorf("GPU %d is held by both jobs: %v and %v", g, held[0], held[1])
		}
	}
	// Both still running (not just one after the other) while the third waits.
	for i := 0; i < 2; i++ {
		if st := poll(t, r, refs[i]); st.State != scheduler.Running {
			t.Fatalf("job %d is %s while the third waits", i, st.State)
		}
	}
	waiting := waitFor(t, r, refs[2], 20*time.Second, "pending for Resources", func(st scheduler.RunStatus) bool {
		return st.State == scheduler.Pending && st.Reason == "Resources"
	})
	if len(waiting.GPUs) != 0 || !waiting.StartedAt.IsZero() {
		t.Errorf("pending job reports GPUs %v, start %v", waiting.GPUs, waiting.StartedAt)
	}

	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	third := waitFor(t, r, refs[2], 60*time.Second, "running or done", func(st scheduler.RunStatus) bool {
		return st.State == scheduler.Running || st.State == scheduler.Completed
	})
	if third.State == scheduler.Running && len(third.GPUs) != 2 {
		t.Errorf("third job holds %v, want 2 GPUs", third.GPUs)
	}
	for i, ref := range refs {
		st := waitState(t, r, ref, scheduler.Completed, 60*time.Second)
		if st.ExitCode != 0 || st.StartedAt.IsZero() || st.EndedAt.Before(st.StartedAt) {
			t.Errorf("job %d: %+v", i, st)
		}
	}
}

func readFileIfExists(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// TestJobCompletesWithLog: output and errors reach the log file, arguments
// and environment arrive unmangled, the workdir is used.
func TestJobCompletesWithLog(t *testing.T) {
	t.Parallel()
	r := slurmRunner(t, Config{ScriptDir: t.TempDir()})
	req := newRequest(t, "sh", "-c",
		`echo "out $ZENITH_JOB_NAME $ZENITH_MOUNT"; echo "err line" >&2; printf '[%s]\n' "$1" "$GREETING"; pwd`,
		"sh", `it's $HOME; "quoted"`)
	req.Env = map[string]string{"GREETING": "hello world $(nope)"}
	// A log path with a space and a percent sign, which sbatch would expand.
	req.LogPath = filepath.Join(t.TempDir(), "my logs", "100% %j.log")
	ref := start(t, r, req)
	st := waitState(t, r, ref, scheduler.Completed, 60*time.Second)
	if st.ExitCode != 0 || st.StartedAt.IsZero() || st.EndedAt.IsZero() {
		t.Errorf("status %+v", st)
	}
	log := readLog(t, req.LogPath)
	for _, want := range []string{
		"out " + req.Name + " /mnt/zenith-test\n",
		"err line\n",
		`[it's $HOME; "quoted"]` + "\n",
		"[hello world $(nope)]\n",
		req.Workdir + "\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if _, err := os.Stat(filepath.Join(r.cfg.ScriptDir, req.Name+".1.sbatch")); err != nil {
		t.Errorf("script copy: %v", err)
	}
}

// TestFailingCommand: a failing command ends FAILED with its exit code; one
// killed by a signal has exit code -1 — with the script exec'ing the
// command, and with its output through the log copier (a log cap).
func TestFailingCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		command  []string
		wantCode int
	}{
		{"exit 3", []string{"sh", "-c", "echo failing; exit 3"}, 3},
		{"missing program", []string{"/nonexistent/program"}, 127},
		{"killed", []string{"sh", "-c", "kill -KILL $$"}, -1},
	}
	for _, logCap := range []int64{0, 1 << 20} {
		r := slurmRunner(t, Config{LogCap: logCap})
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/cap-%d", tt.name, logCap), func(t *testing.T) {
				t.Parallel()
				req := newRequest(t, tt.command...)
				ref := start(t, r, req)
				st := waitState(t, r, ref, scheduler.Failed, 60*time.Second)
				if st.ExitCode != tt.wantCode || st.Reason == "" || st.EndedAt.IsZero() {
					t.Errorf("status %+v, want exit code %d and a reason", st, tt.wantCode)
				}
			})
		}
	}
}

// TestLogCap: a job that writes past the log cap completes with its log
// at the cap and a note of what was dropped; a capped job that is
// cancelled ends CANCELLED, its output up to then in the log, and does
// not wait for Slurm's SIGKILL; what the job writes while it stops still
// reaches the log.
func TestLogCap(t *testing.T) {
	t.Parallel()
	const logCap = 64 << 10
	r := slurmRunner(t, Config{LogCap: logCap})
	// 1 MiB of output, then a last line past the cap.
	req := newRequest(t, "sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x; echo; echo done")
	ref := start(t, r, req)
	if st := waitState(t, r, ref, scheduler.Completed, 60*time.Second); st.ExitCode != 0 {
		t.Errorf("status %+v", st)
	}
	log := readLog(t, req.LogPath)
	body, note, ok := strings.Cut(log, "\n[zenithfs: the log reached its cap of 65536 bytes; further output is dropped]\n")
	if !ok || len(body) != logCap || strings.Trim(body, "x") != "" {
		t.Fatalf("log of %d bytes (body %d, note found %v), want %d bytes of output and the note: …%s", len(log), len(body), ok, logCap, log[max(0, len(log)-300):])
	}
	if want := fmt.Sprintf("[zenithfs: %d bytes dropped]\n", 1048576+6-logCap); note != want {
		t.Errorf("note %q, want %q", note, want)
	}

	req = newRequest(t, "sh", "-c", "trap 'echo stopping; exit 0' TERM; echo started; while :; do sleep 1; done")
	ref = start(t, r, req)
	waitFor(t, r, ref, 60*time.Second, "its first line in the log", func(scheduler.RunStatus) bool {
		b, _ := os.ReadFile(req.LogPath)
		return strings.Contains(string(b), "started")
	})
	begin := time.Now()
	if err := r.Cancel(context.Background(), ref, time.Second); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, ref, scheduler.Cancelled, 30*time.Second)
	if d := time.Since(begin); d > 20*time.Second {
		t.Errorf("cancel took %v", d)
	}
	// The copier outlives the SIGTERM Slurm sends every process of the job.
	if log := readLog(t, req.LogPath); !strings.HasPrefix(log, "started\n") || !strings.Contains(log, "stopping\n") {
		t.Errorf("log %q, want the lines written before and while stopping", log)
	}
}

// TestCancel: a running job and a held (pending) job end CANCELLED; an
// unknown job is ErrNotFound.
func TestCancel(t *testing.T) {
	t.Parallel()
	r := slurmRunner(t, Config{})
	req := newRequest(t, "sh", "-c", "echo started; exec sleep 300")
	ref := start(t, r, req)
	waitState(t, r, ref, scheduler.Running, 60*time.Second)
	if err := r.Cancel(context.Background(), ref, time.Second); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, r, ref, scheduler.Cancelled, 30*time.Second)
	if st.EndedAt.IsZero() {
		t.Errorf("status %+v", st)
	}
	// Cancelling again, once it ended, is not an error.
	if err := r.Cancel(context.Background(), ref, 0); err != nil {
		t.Errorf("second cancel: %v", err)
	}

	held := slurmRunner(t, Config{ExtraArgs: []string{"--hold"}})
	ref2 := start(t, held, newRequest(t, "true"))
	st = poll(t, held, ref2)
	if st.State != scheduler.Pending || st.Reason == "" {
		t.Errorf("held job: %+v, want PENDING with a reason", st)
	}
	if err := held.Cancel(context.Background(), ref2, 0); err != nil {
		t.Fatal(err)
	}
	waitState(t, held, ref2, scheduler.Cancelled, 30*time.Second)

	if err := r.Cancel(context.Background(), "999999999", 0); !errors.Is(err, scheduler.ErrNotFound) {
		t.Errorf("cancel unknown job: %v, want ErrNotFound", err)
	}
}

// TestTimeLimit: a job over its one-minute limit ends TIMEOUT. Slurm counts
// limits in minutes and checks them every 30 s, so this takes 60–90 s.
func TestTimeLimit(t *testing.T) {
	t.Parallel()
	r := slurmRunner(t, Config{})
	req := newRequest(t, "sleep", "600")
	req.TimeLimit = time.Minute
	ref := start(t, r, req)
	st := waitState(t, r, ref, scheduler.Timeout, 150*time.Second)
	if st.StartedAt.IsZero() || st.EndedAt.Sub(st.StartedAt) < 59*time.Second {
		t.Errorf("status %+v: ran less than its limit", st)
	}
}

// TestRestartPollsExistingJob: a new Runner (the daemon restarted) finds the
// jobs of the old one by their RunRef, running and finished; a job Slurm
// never had is LOST with a reason.
func TestRestartPollsExistingJob(t *testing.T) {
	t.Parallel()
	before := slurmRunner(t, Config{})
	stop := filepath.Join(t.TempDir(), "stop")
	req := newRequest(t, "sh", "-c", `while [ ! -e "$1" ]; do sleep 0.2; done; exit 4`, "sh", stop)
	ref := start(t, before, req)
	waitState(t, before, ref, scheduler.Running, 60*time.Second)

	after := New(Config{})
	if st := poll(t, after, ref); st.State != scheduler.Running || st.StartedAt.IsZero() {
		t.Errorf("after restart: %+v, want RUNNING", st)
	}
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if st := waitState(t, after, ref, scheduler.Failed, 60*time.Second); st.ExitCode != 4 {
		t.Errorf("after restart: %+v, want exit code 4", st)
	}
	if st := poll(t, New(Config{}), ref); st.State != scheduler.Failed || st.ExitCode != 4 {
		t.Errorf("second restart: %+v", st)
	}

	st := poll(t, after, "999999999")
	if st.State != scheduler.Lost || !strings.Contains(st.Reason, "999999999") {
		t.Errorf("unknown job: %+v, want LOST with a reason", st)
	}
	// A reference that is not a Slurm job id was recorded by another
	// runner: LOST with a reason, as the local runner does for Slurm's.
	if st, err := after.Poll(context.Background(), "not-a-job"); err != nil || st.State != scheduler.Lost || !strings.Contains(st.Reason, "another runner") {
		t.Errorf("a malformed RunRef: %+v, %v; want LOST with a reason", st, err)
	}
}

// TestMultipleTasks: a two-task job runs its command once per task through
// srun, each with its rank and the world size (what a task uses to pick its
// rank=R,world=W view).
func TestMultipleTasks(t *testing.T) {
	t.Parallel()
	r := slurmRunner(t, Config{})
	req := newRequest(t, `echo "view=rank=$SLURM_PROCID,world=$SLURM_NTASKS"`)
	req.Shell = true
	req.TasksPerNode = 2
	ref := start(t, r, req)
	waitState(t, r, ref, scheduler.Completed, 60*time.Second)
	log := readLog(t, req.LogPath)
	for _, want := range []string{"view=rank=0,world=2\n", "view=rank=1,world=2\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestRejectsBeforeSbatch: an invalid request never reaches sbatch (here
// there is no sbatch at all, so reaching it would be ErrUnavailable), and a
// request no node can satisfy is refused by Slurm as an invalid spec.
func TestRejectsBeforeSbatch(t *testing.T) {
	t.Parallel()
	noSlurm := New(Config{BinDir: t.TempDir()})
	bad := newRequest(t, "true")
	bad.Env = map[string]string{"NOT VALID": "x"}
	_, err := noSlurm.Start(context.Background(), bad)
	if !errors.Is(err, scheduler.ErrInvalidSpec) || errors.Is(err, ErrUnavailable) {
		t.Errorf("invalid request: %v, want ErrInvalidSpec without reaching sbatch", err)
	}
	if _, err := noSlurm.Start(context.Background(), newRequest(t, "true")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("no sbatch: %v, want ErrUnavailable", err)
	}
	if _, err := noSlurm.Poll(context.Background(), "1"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("poll without scontrol: %v, want ErrUnavailable", err)
	}

	r := slurmRunner(t, Config{})
	tooBig := newRequest(t, "true")
	tooBig.GPUCount = 5 // the node has 4
	_, err = r.Start(context.Background(), tooBig)
	if !errors.Is(err, scheduler.ErrInvalidSpec) || !errors.Is(err, ErrSubmit) {
		t.Errorf("5 GPUs on a 4-GPU node: %v, want ErrInvalidSpec and ErrSubmit", err)
	}
}
