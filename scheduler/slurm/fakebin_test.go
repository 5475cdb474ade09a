package slurm

// Unit tests against fake Slurm commands (shell scripts in a temporary
// BinDir): no Slurm is needed.

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

// fakeBin writes each script (a /bin/sh body) as an executable named by
// its key into a new directory and returns it.
func fakeBin(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const scontrolForgot = `echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1`

// A job purged from the controller whose sacct lookup fails (slurmdbd down,
// a timeout) is not known to have ended: Poll fails with ErrUnavailable, to
// be asked again, instead of reporting it LOST.
func TestPollOfPurgedJobWhenSacctFails(t *testing.T) {
	for name, sacct := range map[string]string{
		"slurmdbd down": `echo "sacct: error: slurmdbd: Connection refused" >&2
echo "sacct: error: Problem talking to the database: Connection refused" >&2; exit 1`,
		"timeout":       `exec sleep 5`,
		"other failure": `echo "sacct: error: something new" >&2; exit 1`,
	} {
		t.Run(name, func(t *testing.T) {
			bin := fakeBin(t, map[string]string{"scontrol": scontrolForgot, "sacct": sacct})
			r := New(Config{BinDir: bin, CommandTimeout: 300 * time.Millisecond})
			st, err := r.Poll(context.Background(), "1234")
			if err == nil || !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Poll: %+v, %v; want an error wrapping ErrUnavailable", st, err)
			}
		})
	}
}

// Where there is no accounting to ask, the jobcomp log is read; a job no
// one knows is LOST with a reason, at once.
func TestPollOfPurgedJobWithoutAccounting(t *testing.T) {
	bin := fakeBin(t, map[string]string{
		"scontrol": scontrolForgot,
		"sacct":    `echo "Slurm accounting storage is disabled" >&2; exit 1`,
	})
	st, err := New(Config{BinDir: bin}).Poll(context.Background(), "1234")
	if err != nil || st.State != scheduler.Lost || !strings.Contains(st.Reason, "1234") {
		t.Fatalf("Poll: %+v, %v; want LOST with a reason", st, err)
	}
	comp := filepath.Join(t.TempDir(), "jobcomp.log")
	line := "JobId=1234 UserId=u(1) GroupId=g(1) Name=j JobState=COMPLETED Partition=p TimeLimit=1 " +
		"StartTime=2026-11-29T08:49:55 EndTime=2026-11-29T08:50:55 NodeList=vm ExitCode=0:0\n"
	if err := os.WriteFile(comp, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err = New(Config{BinDir: bin, JobCompLog: comp}).Poll(context.Background(), "1234")
	if err != nil || st.State != scheduler.Completed || st.ExitCode != 0 {
		t.Fatalf("Poll with jobcomp: %+v, %v; want COMPLETED", st, err)
	}
	// No sacct installed at all: the same.
	noSacct := fakeBin(t, map[string]string{"scontrol": scontrolForgot})
	st, err = New(Config{BinDir: noSacct}).Poll(context.Background(), "1234")
	if err != nil || st.State != scheduler.Lost {
		t.Fatalf("Poll without sacct: %+v, %v; want LOST", st, err)
	}
}

// A job the controller purged is read from sacct.
func TestPollOfPurgedJobFromSacct(t *testing.T) {
	bin := fakeBin(t, map[string]string{
		"scontrol": scontrolForgot,
		"sacct":    `echo "1234|FAILED|3:0|2026-11-29T08:49:55|2026-11-29T08:50:55"`,
	})
	st, err := New(Config{BinDir: bin}).Poll(context.Background(), "1234")
	if err != nil || st.State != scheduler.Failed || st.ExitCode != 3 {
		t.Fatalf("Poll: %+v, %v; want FAILED with exit code 3", st, err)
	}
}

// A job the controller does not know while sacct still shows it running
// (its end never reached the database) is reported running for a bounded
// time only, then LOST with a reason.
func TestPollOfJobOnlySacctShowsActive(t *testing.T) {
	known := filepath.Join(t.TempDir(), "known")
	bin := fakeBin(t, map[string]string{
		"scontrol": fmt.Sprintf(`if [ -e %s ]; then echo "JobId=1234 JobState=RUNNING Reason=None ExitCode=0:0 StartTime=2026-11-29T08:49:55"; exit 0; fi
`, known) + scontrolForgot,
		"sacct": `echo "1234|RUNNING|0:0|2026-11-29T08:49:55|Unknown"`,
	})
	r := New(Config{BinDir: bin, ForgottenGrace: 300 * time.Millisecond})
	poll := func() scheduler.RunStatus {
		t.Helper()
		st, err := r.Poll(context.Background(), "1234")
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := poll(); st.State != scheduler.Running {
		t.Fatalf("first poll: %+v, want RUNNING", st)
	}
	time.Sleep(200 * time.Millisecond)
	// The controller knowing the job again restarts the clock.
	if err := os.WriteFile(known, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if st := poll(); st.State != scheduler.Running {
		t.Fatalf("known again: %+v", st)
	}
	os.Remove(known)
	if st := poll(); st.State != scheduler.Running {
		t.Fatalf("forgotten again: %+v, want RUNNING within the grace", st)
	}
	time.Sleep(200 * time.Millisecond)
	if st := poll(); st.State != scheduler.Running {
		t.Fatalf("200 ms after it was forgotten again: %+v, want RUNNING (the clock restarted)", st)
	}
	time.Sleep(200 * time.Millisecond)
	st := poll()
	if st.State != scheduler.Lost || !strings.Contains(st.Reason, "1234") || !strings.Contains(st.Reason, "RUNNING") {
		t.Fatalf("past the grace: %+v, want LOST with a reason", st)
	}
}

// sbatch refusing a job for a submit limit is temporary: the job waits and
// is submitted again. A policy refusal naming another limit is not.
func TestSubmitLimitRefusalIsTemporary(t *testing.T) {
	for _, tt := range []struct {
		name, stderr string
		temporary    bool
	}{
		{"assoc submit limit", "sbatch: error: AssocMaxSubmitJobLimit\nsbatch: error: Batch job submission failed: " +
			"Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)", true},
		{"qos submit limit", "sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: Batch job submission failed: " +
			"Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)", true},
		{"no reason line", "sbatch: error: Batch job submission failed: " +
			"Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)", true},
		{"deny on limit", "sbatch: error: QOSMaxWallDurationPerJobLimit\nsbatch: error: Batch job submission failed: " +
			"Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bin := fakeBin(t, map[string]string{"sbatch": "cat >/dev/null\ncat >&2 <<'EOF'\n" + tt.stderr + "\nEOF\nexit 1"})
			_, err := New(Config{BinDir: bin}).Start(context.Background(), newRequest(t, "true"))
			if err == nil || !errors.Is(err, ErrSubmit) {
				t.Fatalf("Start: %v, want ErrSubmit", err)
			}
			if got := errors.Is(err, scheduler.ErrTemporary); got != tt.temporary {
				t.Fatalf("Start: %v; temporary %v, want %v", err, got, tt.temporary)
			}
		})
	}
}

// fakeSlurm is a fake sbatch/squeue/scontrol over files in a directory:
// sbatch appends its --comment to dir/calls and queues the job in
// dir/queue (as squeue -o '%i|%k' prints it) under the next id from 101;
// its first call does so and then fails as a timed-out sbatch does when
// dir/flaky exists. squeue prints dir/queue, or fails as with the
// controller down when dir/down exists; scontrol shows every job running.
func fakeSlurm(t *testing.T) (bin, dir string) {
	t.Helper()
	dir = t.TempDir()
	bin = fakeBin(t, map[string]string{
		"sbatch": fmt.Sprintf(`cat >/dev/null
d=%s
for a in "$@"; do case "$a" in --comment=*) c="${a#--comment=}";; esac; done
n=$(( $(wc -l < "$d/calls" 2>/dev/null || echo 0) + 1 ))
echo "$c" >> "$d/calls"
id=$((100 + n))
echo "$id|$c" >> "$d/queue"
if [ "$n" = 1 ] && [ -e "$d/flaky" ]; then
	echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2; exit 1
fi
echo "$id"`, dir),
		"squeue": fmt.Sprintf(`d=%s
if [ -e "$d/down" ]; then echo "slurm_load_jobs error: Unable to contact slurm controller (connect failure)" >&2; exit 1; fi
cat "$d/queue" 2>/dev/null; exit 0`, dir),
		"scontrol": `for id; do :; done
echo "JobId=$id JobName=x JobState=RUNNING Reason=None ExitCode=0:0 StartTime=2026-11-29T08:49:55"`,
	})
	return bin, dir
}

func sbatchCalls(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "calls"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// A resubmission after an uncertain sbatch adopts the job the first one
// launched (found by its key in the comment) instead of submitting again;
// with no such job it submits; when it cannot look it submits nothing.
func TestResubmitAdoptsTheLaunchedJob(t *testing.T) {
	bin, dir := fakeSlurm(t)
	r := New(Config{BinDir: bin})
	req := newRequest(t, "true")
	req.StartKey = "k1"
	if err := os.WriteFile(filepath.Join(dir, "flaky"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := r.Start(context.Background(), req)
	if !errors.Is(err, scheduler.ErrTemporary) {
		t.Fatalf("timed-out sbatch: %v, want ErrTemporary", err)
	}
	calls := sbatchCalls(t, dir)
	if want := "zenithfs job " + req.Name + " attempt 1 key k1"; len(calls) != 1 || calls[0] != want {
		t.Fatalf("sbatch comments %q, want [%q]", calls, want)
	}

	req.Resubmit = true
	if err := os.WriteFile(filepath.Join(dir, "down"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Start(context.Background(), req); !errors.Is(err, scheduler.ErrTemporary) || len(sbatchCalls(t, dir)) != 1 {
		t.Fatalf("resubmit, squeue failing: %v, %d sbatch calls; want ErrTemporary and no submission", err, len(sbatchCalls(t, dir)))
	}
	os.Remove(filepath.Join(dir, "down"))
	ref, err := r.Start(context.Background(), req)
	if err != nil || ref != "101" || len(sbatchCalls(t, dir)) != 1 {
		t.Fatalf("resubmit: %q, %v, %d sbatch calls; want the launched job 101 adopted", ref, err, len(sbatchCalls(t, dir)))
	}

	// Another attempt (another key) is not confused with it.
	req.Attempt, req.StartKey = 2, "k2"
	ref, err = r.Start(context.Background(), req)
	if err != nil || ref != "102" || len(sbatchCalls(t, dir)) != 2 {
		t.Fatalf("resubmit of a job never launched: %q, %v, %d sbatch calls; want a new job 102", ref, err, len(sbatchCalls(t, dir)))
	}
}

// Through the scheduler: an sbatch that times out after Slurm accepted the
// job leaves one Slurm job, adopted, not two.
func TestSchedulerDoesNotSubmitTwiceAfterSbatchTimeout(t *testing.T) {
	bin, dir := fakeSlurm(t)
	if err := os.WriteFile(filepath.Join(dir, "flaky"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	s, err := scheduler.New(scheduler.Config{
		StateDir: state, Runner: New(Config{BinDir: bin}), PollInterval: 50 * time.Millisecond, LeaveRunning: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if _, err := s.Submit([]byte(`{"name":"j","command":["true"]}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, _ := s.Job("j")
		if j.State == scheduler.Running {
			break
		}
		if j.State.Terminal() || time.Now().After(deadline) {
			t.Fatalf("job %s (%s), want RUNNING", j.State, j.Reason)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if calls := sbatchCalls(t, dir); len(calls) != 1 {
		t.Fatalf("sbatch ran %d times (%q): a duplicate Slurm job", len(calls), calls)
	}
}
