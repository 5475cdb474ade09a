package scheduler

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FindStarted finds an attempt a runner started by its exit file's path:
// running, by its wrapper process; ended, by the exit file (pid 0, which
// Poll reads and Cancel leaves alone); never launched, not at all.
func TestLocalFindStarted(t *testing.T) {
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	r := NewLocalRunner(LocalConfig{Workdir: dir})
	req := RunRequest{Name: "found", Attempt: 1, Shell: true, LogPath: filepath.Join(dir, "logs", "found.7.log"),
		Command: []string{fmt.Sprintf("while [ ! -e %s ]; do sleep 0.01; done; exit 4", gate)}}
	ref, err := r.Start(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	other := NewLocalRunner(LocalConfig{Workdir: dir}) // a restarted daemon's runner
	got, err := other.FindStarted(context.Background(), req)
	if err != nil || got != ref {
		t.Fatalf("running attempt: found %q, %v; want %q", got, err, ref)
	}
	next := req
	next.Attempt = 2
	if got, err := other.FindStarted(context.Background(), next); err != nil || got != "" {
		t.Fatalf("attempt never launched: found %q, %v", got, err)
	}
	os.WriteFile(gate, nil, 0o644)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st, _ := r.Poll(context.Background(), ref); st.State.Terminal() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the attempt did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ended, err := other.FindStarted(context.Background(), req)
	if err != nil || ended == "" || ended == ref {
		t.Fatalf("ended attempt: found %q, %v", ended, err)
	}
	if other.PID(ended) != 0 {
		t.Fatalf("ended attempt's pid = %d, want 0", other.PID(ended))
	}
	st, err := other.Poll(context.Background(), ended)
	if err != nil || st.State != Failed || st.ExitCode != 4 {
		t.Fatalf("poll of the ended attempt: %+v, %v; want FAILED with exit code 4", st, err)
	}
	if err := other.Cancel(context.Background(), ended, time.Millisecond); err != nil {
		t.Fatalf("cancel of an ended attempt: %v", err)
	}
	time.Sleep(50 * time.Millisecond) // a stray SIGKILL to the group would land now
}

// A daemon that died between launching an attempt and recording it: the
// next one adopts the attempt, with the GPU it was started on, instead of
// running the job a second time.
func TestRestartAdoptsAnAttemptLaunchedButNotRecorded(t *testing.T) {
	cfg := testConfig(t, 2)
	dir := t.TempDir()
	gate, runs := filepath.Join(dir, "gate"), filepath.Join(dir, "runs")
	sp, err := ParseSpec(shJob(t, "twice", fmt.Sprintf("echo run >> %s; while [ ! -e %s ]; do sleep 0.01; done", runs, gate), map[string]any{"gpus": 1}))
	if err != nil {
		t.Fatal(err)
	}
	// What the dead daemon left: the record as dispatch stores it before
	// Start (PENDING, its StartKey, GPU 1), and the attempt it launched.
	rec := &record{Seq: 1, Spec: sp, State: Pending, SubmitTime: time.Now().UTC(), GPUs: []int{1}, StartKey: newStartKey(),
		LogPath: filepath.Join(cfg.StateDir, "logs", "twice.1.log")}
	if err := os.MkdirAll(filepath.Dir(rec.LogPath), 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := openStore(filepath.Join(cfg.StateDir, "jobs.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.put(rec); err != nil {
		t.Fatal(err)
	}
	st.close()
	dead := NewLocalRunner(LocalConfig{Workdir: dir})
	req := RunRequest{Name: "twice", Attempt: 1, Shell: true, Command: sp.Command, GPUs: []int{1}, LogPath: rec.LogPath, StartKey: rec.StartKey}
	if _, err := dead.Start(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	waitFile(t, runs, 5*time.Second)

	s := newTestScheduler(t, cfg)
	j, _ := s.Job("twice")
	if j.State != Running || len(j.GPUs) != 1 || j.GPUs[0] != 1 || j.Attempts != 1 || j.PID == 0 {
		t.Fatalf("after restart: %s, gpus %v, %d attempts, pid %d; want RUNNING on GPU 1, 1 attempt, its pid", j.State, j.GPUs, j.Attempts, j.PID)
	}
	// GPU 1 is held: a job wanting one gets GPU 0, a job wanting both waits.
	mustSubmit(t, s, shJob(t, "one", "echo $CUDA_VISIBLE_DEVICES", map[string]any{"gpus": 1}))
	mustSubmit(t, s, shJob(t, "both", "true", map[string]any{"gpus": 2}))
	one := waitState(t, s, "one", Completed, 5*time.Second)
	if log := readLog(t, one); log != "0\n" {
		t.Fatalf("job one ran on GPUs %q, want 0", log)
	}
	if b, _ := s.Job("both"); b.State != Pending {
		t.Fatalf("job both is %s while GPU 1 is held", b.State)
	}
	os.WriteFile(gate, nil, 0o644)
	waitState(t, s, "twice", Completed, 5*time.Second)
	waitState(t, s, "both", Completed, 5*time.Second)
	if b, _ := os.ReadFile(runs); strings.Count(string(b), "run") != 1 {
		t.Fatalf("the job ran %d times, want once", strings.Count(string(b), "run"))
	}
}
