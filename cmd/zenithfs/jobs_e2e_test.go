package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/internal/sampledata"
)

func sh(t *testing.T, script string) (string, error) {
	t.Helper()
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	return string(out), err
}

func waitStatus(t *testing.T, path, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		if strings.TrimSpace(string(b)) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q, want %s", path, b, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReadmeJobSession runs the README's echo/cat/tail/cancel/rmdir session
// against the real daemon with --gpus 2.
func TestReadmeJobSession(t *testing.T) {
	data := t.TempDir()
	sampledata.WriteCSV(filepath.Join(data, "a.csv"), 0, 100)
	mnt := mountDaemon(t, "--dataset", "d="+data, "--gpus", "2")
	jobs := filepath.Join(mnt, ".zenith", "jobs")
	if out, err := sh(t, `echo '{"name":"resnet","command":["sh","-c","echo gpus=$CUDA_VISIBLE_DEVICES; ls $ZENITH_MOUNT/d | head -1"],"gpus":2,"time_limit":"2h"}' > `+jobs+`/submit`); err != nil {
		t.Fatalf("submit: %v %s", err, out)
	}
	waitStatus(t, filepath.Join(jobs, "resnet", "status"), "COMPLETED", 20*time.Second)
	log, _ := os.ReadFile(filepath.Join(jobs, "resnet", "log"))
	if !strings.Contains(string(log), "gpus=0,1") || !strings.Contains(string(log), "000000.arrow") {
		t.Fatalf("log: %q", log)
	}
	// A long job: tail -f follows it, cancel stops it.
	if out, err := sh(t, `echo '{"name":"long","command":["sh","-c","i=0; while true; do i=$((i+1)); echo step $i; sleep 0.1; done"],"gpus":1}' > `+jobs+`/submit`); err != nil {
		t.Fatalf("submit: %v %s", err, out)
	}
	waitStatus(t, filepath.Join(jobs, "long", "status"), "RUNNING", 10*time.Second)
	out, _ := sh(t, "timeout 2 tail -f "+filepath.Join(jobs, "long", "log")+" | head -5")
	if strings.Count(out, "step") < 5 {
		t.Fatalf("tail -f of a running job: %q", out)
	}
	if out, err := sh(t, "echo 1 > "+filepath.Join(jobs, "long", "cancel")); err != nil {
		t.Fatalf("cancel: %v %s", err, out)
	}
	waitStatus(t, filepath.Join(jobs, "long", "status"), "CANCELLED", 20*time.Second)
	gpus, _ := os.ReadFile(filepath.Join(mnt, ".zenith", "gpus"))
	if strings.Count(string(gpus), "\n") != 2 {
		t.Fatalf("gpus: %q", gpus)
	}
	// rmdir forgets the ended job; its name is free again.
	if out, err := sh(t, "rmdir "+filepath.Join(jobs, "long")); err != nil {
		t.Fatalf("rmdir: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(jobs, "long")); !os.IsNotExist(err) {
		t.Fatalf("removed job still there: %v", err)
	}
	if out, err := sh(t, `echo '{"name":"long","command":["true"]}' > `+jobs+`/submit`); err != nil {
		t.Fatalf("resubmit a removed job's name: %v %s", err, out)
	}
	waitStatus(t, filepath.Join(jobs, "long", "status"), "COMPLETED", 20*time.Second)
	// A bad spec: the echo fails and the reason is readable.
	if _, err := sh(t, `echo '{"name":"bad name!","command":["true"]}' > `+jobs+`/submit`); err == nil {
		t.Fatal("a bad spec was accepted")
	}
	errs, _ := os.ReadFile(filepath.Join(jobs, "errors"))
	if !strings.Contains(string(errs), "name") {
		t.Fatalf("jobs/errors: %q", errs)
	}
}
