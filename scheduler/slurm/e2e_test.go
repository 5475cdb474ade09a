package slurm

// End-to-end: the real scheduler (queue, job store) with this runner on the
// real single-node Slurm. The control-tree (FUSE) level test lives with the
// fs package. These tests are not parallel: they use GPUs and run before the
// parallel runner tests.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/scheduler"
)

func newScheduler(t *testing.T, stateDir string, leaveRunning bool) *scheduler.Scheduler {
	t.Helper()
	s, err := scheduler.New(scheduler.Config{
		StateDir:     stateDir,
		Runner:       slurmRunner(t, Config{Workdir: filepath.Join(stateDir, "work")}),
		MountPoint:   "/mnt/zenith-e2e",
		PollInterval: 200 * time.Millisecond,
		Grace:        2 * time.Second,
		LeaveRunning: leaveRunning,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func closeScheduler(t *testing.T, s *scheduler.Scheduler) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("close scheduler: %v", err)
	}
}

func submit(t *testing.T, s *scheduler.Scheduler, spec string) scheduler.JobInfo {
	t.Helper()
	j, err := s.Submit([]byte(spec))
	if err != nil {
		t.Fatalf("submit %s: %v", spec, err)
	}
	return j
}

func waitJob(t *testing.T, s *scheduler.Scheduler, name string, want scheduler.State, timeout time.Duration) scheduler.JobInfo {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, ok := s.Job(name)
		if !ok {
			t.Fatalf("job %s unknown", name)
		}
		if j.State == want {
			return j
		}
		if j.State.Terminal() || time.Now().After(deadline) {
			t.Fatalf("job %s is %s (%s), want %s", name, j.State, j.Reason, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func uniq(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e9)
}

// TestSchedulerOnSlurm submits specs to the scheduler and sees them run as
// Slurm jobs: completion with a log, GPUs from Slurm's allocation, failure
// with an exit code, cancel, and a bad spec rejected before sbatch.
func TestSchedulerOnSlurm(t *testing.T) {
	s := newScheduler(t, t.TempDir(), false)
	defer closeScheduler(t, s)

	ok, gpu, bad, long := uniq("ok"), uniq("gpu"), uniq("bad"), uniq("long")
	submit(t, s, fmt.Sprintf(`{"name":%q,"command":["sh","-c","echo hello from $ZENITH_JOB_NAME at $ZENITH_MOUNT"]}`, ok))
	submit(t, s, fmt.Sprintf(`{"name":%q,"gpus":2,"command":["sh","-c","echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES; sleep 1"]}`, gpu))
	submit(t, s, fmt.Sprintf(`{"name":%q,"command":["sh","-c","exit 9"]}`, bad))
	submit(t, s, fmt.Sprintf(`{"name":%q,"command":["sleep","300"]}`, long))

	j := waitJob(t, s, ok, scheduler.Completed, 60*time.Second)
	if j.Runner != "slurm" || j.ExitCode == nil || *j.ExitCode != 0 {
		t.Errorf("%s: %+v", ok, j)
	}
	if log, err := os.ReadFile(j.LogPath); err != nil || !strings.Contains(string(log), "hello from "+ok+" at /mnt/zenith-e2e") {
		t.Errorf("%s log: %q, %v", ok, log, err)
	}

	j = waitJob(t, s, bad, scheduler.Failed, 60*time.Second)
	if j.ExitCode == nil || *j.ExitCode != 9 {
		t.Errorf("%s: %+v, want exit code 9", bad, j)
	}

	running := waitJob(t, s, gpu, scheduler.Running, 60*time.Second)
	j = waitJob(t, s, gpu, scheduler.Completed, 60*time.Second)
	log, _ := os.ReadFile(j.LogPath)
	if len(running.GPUs) != 2 || !strings.Contains(string(log), "CUDA_VISIBLE_DEVICES="+joinInts(running.GPUs)+"\n") {
		t.Errorf("%s held GPUs %v; log %q", gpu, running.GPUs, log)
	}

	waitJob(t, s, long, scheduler.Running, 60*time.Second)
	if err := s.Cancel(long); err != nil {
		t.Fatal(err)
	}
	waitJob(t, s, long, scheduler.Cancelled, 30*time.Second)

	for _, spec := range []string{
		`{"name":"x y","command":["true"]}`,
		`{"name":"unknown-field","command":["true"],"gpuz":1}`,
		`{"name":"empty","command":[]}`,
	} {
		if _, err := s.Submit([]byte(spec)); !errors.Is(err, scheduler.ErrInvalidSpec) {
			t.Errorf("submit %s: %v, want ErrInvalidSpec", spec, err)
		}
	}
	if n := len(s.List()); n != 4 {
		t.Errorf("%d jobs listed, want the 4 accepted ones", n)
	}
}

// TestSchedulerRestartOnSlurm: the daemon stops while its jobs keep running
// in Slurm; the next daemon re-reads their states from Slurm — one still
// running, adopted and followed to the end, one that finished meanwhile.
func TestSchedulerRestartOnSlurm(t *testing.T) {
	state := t.TempDir()
	stop := filepath.Join(t.TempDir(), "stop")
	first := newScheduler(t, state, true)
	still, ended := uniq("still"), uniq("ended")
	submit(t, first, fmt.Sprintf(`{"name":%q,"command":["sh","-c","while [ ! -e %s ]; do sleep 0.2; done"]}`, still, stop))
	submit(t, first, fmt.Sprintf(`{"name":%q,"command":["sh","-c","sleep 1; exit 6"]}`, ended))
	waitJob(t, first, still, scheduler.Running, 60*time.Second)
	waitJob(t, first, ended, scheduler.Running, 60*time.Second)
	closeScheduler(t, first)

	// While no daemon runs, "ended" finishes in Slurm.
	time.Sleep(3 * time.Second)

	second := newScheduler(t, state, false)
	defer closeScheduler(t, second)
	j, _ := second.Job(ended)
	if j.State != scheduler.Failed || j.ExitCode == nil || *j.ExitCode != 6 {
		t.Errorf("%s after restart: %+v, want FAILED with exit code 6", ended, j)
	}
	if j, _ := second.Job(still); j.State != scheduler.Running {
		t.Errorf("%s after restart: %+v, want RUNNING", still, j)
	}
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitJob(t, second, still, scheduler.Completed, 60*time.Second)
}
