package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/internal/sampledata"
)

// TestSlurmThroughControlTree drives the real daemon with --jobs slurm
// against the single-node Slurm that scripts/slurm-up.sh starts (CI runs it
// in scripts/test.sh).
func TestSlurmThroughControlTree(t *testing.T) {
	if out, err := exec.Command("scontrol", "ping").CombinedOutput(); err != nil || !strings.Contains(string(out), "UP") {
		t.Fatalf("no Slurm controller answers (%v: %s): run scripts/slurm-up.sh (as root) first", err, out)
	}
	data := t.TempDir()
	sampledata.WriteCSV(filepath.Join(data, "a.csv"), 0, 10)
	state := t.TempDir()
	mnt := t.TempDir()
	mount := func() {
		if r := zenith(t, "mount", "--jobs", "slurm", "--state-dir", state, "--dataset", "d="+data, mnt); r.code != 0 {
			t.Fatalf("mount --jobs slurm: %s", r.stderr)
		}
	}
	mount()
	t.Cleanup(func() {
		exec.Command("scancel", "--name=zslurm-a", "--name=zslurm-b", "--name=zslurm-c").Run()
		if mounted(mnt) {
			zenith(t, "umount", mnt)
		}
	})
	jobs := filepath.Join(mnt, ".zenith", "jobs")
	submit := func(spec string) {
		t.Helper()
		if out, err := sh(t, "echo '"+spec+"' > "+jobs+"/submit"); err != nil {
			t.Fatalf("submit %s: %v %s", spec, err, out)
		}
	}
	status := func(name string) map[string]any {
		b, _ := os.ReadFile(filepath.Join(jobs, name, "status.json"))
		var m map[string]any
		json.Unmarshal(b, &m)
		return m
	}

	submit(`{"name":"zslurm-ok","command":["sh","-c","echo gpus=$CUDA_VISIBLE_DEVICES slurm=$SLURM_JOB_GPUS"],"gpus":2}`)
	waitStatus(t, filepath.Join(jobs, "zslurm-ok", "status"), "COMPLETED", 60*time.Second)
	log, _ := os.ReadFile(filepath.Join(jobs, "zslurm-ok", "log"))
	if !strings.Contains(string(log), "gpus=") || strings.Contains(string(log), "gpus= ") {
		t.Fatalf("log of a 2-GPU Slurm job: %q", log)
	}

	// Two 2-GPU jobs run together on the 4-GPU node; a third waits.
	for _, n := range []string{"zslurm-a", "zslurm-b", "zslurm-c"} {
		submit(`{"name":"` + n + `","command":["sleep","30"],"gpus":2}`)
	}
	waitStatus(t, filepath.Join(jobs, "zslurm-a", "status"), "RUNNING", 60*time.Second)
	waitStatus(t, filepath.Join(jobs, "zslurm-b", "status"), "RUNNING", 60*time.Second)
	time.Sleep(2 * time.Second)
	if st := status("zslurm-c"); st["state"] != "PENDING" {
		t.Fatalf("third 2-GPU job on a 4-GPU node: %v", st)
	}
	// Cancel → CANCELLED, and the waiting job then runs.
	if out, err := sh(t, "echo 1 > "+jobs+"/zslurm-a/cancel"); err != nil {
		t.Fatalf("cancel: %v %s", err, out)
	}
	waitStatus(t, filepath.Join(jobs, "zslurm-a", "status"), "CANCELLED", 60*time.Second)
	waitStatus(t, filepath.Join(jobs, "zslurm-c", "status"), "RUNNING", 60*time.Second)

	// A failing command → FAILED with its exit code.
	submit(`{"name":"zslurm-fail","command":["sh","-c","exit 7"]}`)
	waitStatus(t, filepath.Join(jobs, "zslurm-fail", "status"), "FAILED", 60*time.Second)
	if st := status("zslurm-fail"); st["exit_code"] != float64(7) {
		t.Fatalf("exit code: %v", st)
	}
	// time_limit → TIMEOUT.
	submit(`{"name":"zslurm-slow","command":["sleep","300"],"time_limit":"3s"}`)
	waitStatus(t, filepath.Join(jobs, "zslurm-slow", "status"), "TIMEOUT", 90*time.Second)

	// A bad spec is rejected before sbatch.
	if _, err := sh(t, `echo '{"name":"zslurm-bad","command":[]}' > `+jobs+`/submit`); err == nil {
		t.Fatal("an empty command was accepted")
	}

	// Restart: states are re-read from Slurm.
	if r := zenith(t, "umount", mnt); r.code != 0 {
		t.Fatalf("umount: %s", r.stderr)
	}
	mount()
	if b, _ := os.ReadFile(filepath.Join(jobs, "zslurm-fail", "status")); strings.TrimSpace(string(b)) != "FAILED" {
		t.Fatalf("after restart zslurm-fail is %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(jobs, "zslurm-ok", "log")); !strings.Contains(string(b), "gpus=") {
		t.Fatalf("after restart the log is gone: %q", b)
	}
}
