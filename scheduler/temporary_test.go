package scheduler

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// flakyRunner refuses the first n starts with ErrTemporary, then runs jobs
// as local processes.
type flakyRunner struct {
	*LocalRunner
	refusals atomic.Int32
}

func (f *flakyRunner) Start(ctx context.Context, req RunRequest) (RunRef, error) {
	if f.refusals.Add(-1) >= 0 {
		return "", fmt.Errorf("controller down: %w", ErrTemporary)
	}
	return f.LocalRunner.Start(ctx, req)
}

// oneGPUScheduler runs r's jobs with one declared GPU, polling every
// 50 ms, SIGKILL 1 s after SIGTERM; it is closed when the test ends.
func oneGPUScheduler(t *testing.T, dir string, r Runner) *Scheduler {
	t.Helper()
	s, err := New(Config{StateDir: dir, GPUs: []GPU{{Index: 0, Name: "declared"}}, Runner: r, PollInterval: 50 * time.Millisecond, Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func TestTemporaryStartFailureKeepsTheJobPending(t *testing.T) {
	dir := t.TempDir()
	r := &flakyRunner{LocalRunner: NewLocalRunner(LocalConfig{Workdir: dir})}
	r.refusals.Store(2)
	s := oneGPUScheduler(t, dir, r)
	if _, err := s.Submit([]byte(`{"name":"j","command":["true"],"gpus":1}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, _ := s.Job("j")
		if j.State == Completed {
			if j.Attempts != 1 {
				t.Fatalf("attempts %d after two refused starts, want 1", j.Attempts)
			}
			return
		}
		if j.State.Terminal() {
			t.Fatalf("a temporary start failure ended the job: %s (%s)", j.State, j.Reason)
		}
		if time.Now().After(deadline) {
			t.Fatalf("job never started: %s (%s)", j.State, j.Reason)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// refusingCanceler fails the first n cancels (scancel timing out), then
// cancels as the local runner does.
type refusingCanceler struct {
	*LocalRunner
	refusals atomic.Int32
}

func (f *refusingCanceler) Cancel(ctx context.Context, ref RunRef, grace time.Duration) error {
	if f.refusals.Add(-1) >= 0 {
		return fmt.Errorf("socket timed out: %w", ErrTemporary)
	}
	return f.LocalRunner.Cancel(ctx, ref, grace)
}

// A cancel the runner refuses is not forgotten: the caller gets the error,
// and the scheduler asks again until the job is stopped.
func TestRefusedCancelIsAskedAgain(t *testing.T) {
	dir := t.TempDir()
	r := &refusingCanceler{LocalRunner: NewLocalRunner(LocalConfig{Workdir: dir})}
	r.refusals.Store(1)
	s := oneGPUScheduler(t, dir, r)
	if _, err := s.Submit([]byte(`{"name":"j","command":["sleep","60"]}`)); err != nil {
		t.Fatal(err)
	}
	waitState := func(want State) JobInfo {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			j, _ := s.Job("j")
			if j.State == want {
				return j
			}
			if time.Now().After(deadline) {
				t.Fatalf("job is %s (%s), want %s", j.State, j.Reason, want)
			}
		}
	}
	waitState(Running)
	if err := s.Cancel("j"); err == nil {
		t.Fatal("a refused cancel reported success")
	}
	j := waitState(Cancelled)
	if j.Reason != "cancelled by user" {
		t.Errorf("reason %q", j.Reason)
	}
}

// failingStarter refuses every start with err.
type failingStarter struct {
	*LocalRunner
	err    error
	starts atomic.Int32
}

func (f *failingStarter) Start(ctx context.Context, req RunRequest) (RunRef, error) {
	f.starts.Add(1)
	return "", f.err
}

// A start that fails is retried after a growing pause, not at once; one
// refused for the spec itself is not retried at all.
func TestFailedStartsBackOffAndRefusalsEnd(t *testing.T) {
	for _, c := range []struct {
		name     string
		err      error
		maxStart int32
	}{
		{"workdir gone", fmt.Errorf("chdir /gone: no such file"), 2},
		{"refused", fmt.Errorf("sbatch: invalid partition: %w", ErrInvalidSpec), 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			r := &failingStarter{LocalRunner: NewLocalRunner(LocalConfig{Workdir: dir}), err: c.err}
			s := oneGPUScheduler(t, dir, r)
			if _, err := s.Submit([]byte(`{"name":"j","command":["true"],"retries":5}`)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond)
			if n := r.starts.Load(); n < 1 || n > c.maxStart {
				t.Fatalf("%d starts in 1.5 s, want 1 to %d", n, c.maxStart)
			}
			if j, _ := s.Job("j"); c.maxStart == 1 && (j.State != Failed || j.Attempts != 1) {
				t.Fatalf("a refused start: %s after %d attempts (%s), want FAILED after 1", j.State, j.Attempts, j.Reason)
			}
		})
	}
}

// slowRefuser takes a while to refuse its first start (sbatch timing
// out), then starts jobs as local processes.
type slowRefuser struct {
	*LocalRunner
	starts atomic.Int32
}

func (f *slowRefuser) Start(ctx context.Context, req RunRequest) (RunRef, error) {
	if f.starts.Add(1) == 1 {
		time.Sleep(300 * time.Millisecond)
		return "", fmt.Errorf("controller slow: %w", ErrTemporary)
	}
	return f.LocalRunner.Start(ctx, req)
}

// A job cancelled while its start was in flight, and that start then
// failed, is never started again: it ends CANCELLED.
func TestCancelledWhileStartingIsNeverStarted(t *testing.T) {
	dir := t.TempDir()
	r := &slowRefuser{LocalRunner: NewLocalRunner(LocalConfig{Workdir: dir})}
	s := oneGPUScheduler(t, dir, r)
	if _, err := s.Submit([]byte(`{"name":"j","command":["sleep","60"]}`)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); r.starts.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("never started")
		}
	}
	if err := s.Cancel("j"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		j, _ := s.Job("j")
		if j.State == Cancelled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job is %s (%s)", j.State, j.Reason)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n := r.starts.Load(); n != 1 {
		t.Fatalf("a job cancelled during its first start was started %d times", n)
	}
}
