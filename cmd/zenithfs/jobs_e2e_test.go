package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// A running job that keeps the mount busy (a trainer with a batch file
// open, working inside the mount) does not stop `zenithfs umount`: the
// daemon stops its jobs, as an unmount does, and unmounts. A process
// that is not one of its jobs keeps the mount busy and is named.
func TestUmountStopsJobsThatHoldTheMount(t *testing.T) {
	data, state := t.TempDir(), t.TempDir()
	sampledata.WriteCSV(filepath.Join(data, "a.csv"), 0, 100)
	mnt := mountDaemon(t, "--dataset", "d="+data, "--batch-size", "10", "--state-dir", state)
	jobs := filepath.Join(mnt, ".zenith", "jobs")
	if out, err := sh(t, `echo '{"name":"trainer","command":"cd \"$ZENITH_MOUNT/d\" && exec 5<000000.arrow && sleep 60","shell":true}' > `+jobs+`/submit`); err != nil {
		t.Fatalf("submit: %v %s", err, out)
	}
	waitStatus(t, filepath.Join(jobs, "trainer", "status"), "RUNNING", 10*time.Second)

	// Another process inside the mount: busy, and named.
	f, err := os.Open(filepath.Join(mnt, "d", "000001.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	r := zenith(t, "umount", mnt)
	f.Close()
	if r.code == 0 || !strings.Contains(r.stderr, "busy") || !strings.Contains(r.stderr, fmt.Sprint(os.Getpid())) {
		t.Fatalf("umount with another process inside: code %d, %q; want busy, naming pid %d", r.code, r.stderr, os.Getpid())
	}
	if !mounted(mnt) {
		t.Fatal("a refused umount unmounted")
	}

	pid := daemonPid(t, mnt)
	start := time.Now()
	if r := zenith(t, "umount", mnt); r.code != 0 {
		t.Fatalf("umount with only the daemon's job inside: %s", r.stderr)
	}
	if mounted(mnt) || alive(pid) {
		t.Fatal("still mounted, or the daemon still running")
	}
	t.Logf("umount stopped the job and unmounted in %s", time.Since(start).Round(time.Millisecond))

	mnt = mountDaemon(t, "--dataset", "d="+data, "--state-dir", state)
	st, err := os.ReadFile(filepath.Join(mnt, ".zenith", "jobs", "trainer", "status.json"))
	if err != nil || !strings.Contains(string(st), "CANCELLED") || !strings.Contains(string(st), "daemon shutdown") {
		t.Fatalf("the job after umount: %v %s", err, st)
	}
	// The daemon's log has each line once (two mounts: two "mounted").
	log, _ := os.ReadFile(filepath.Join(state, "zenithfs.log"))
	if n := strings.Count(string(log), "msg=mounted "); n != 2 {
		t.Fatalf("the log says mounted %d times for 2 mounts:\n%s", n, log)
	}
}

// A daemon killed while a job runs leaves a stale mount that umount clears
// at once: the job does not hold the FUSE connection open.
func TestUmountAfterACrashWithAJobRunning(t *testing.T) {
	data := t.TempDir()
	sampledata.WriteCSV(filepath.Join(data, "a.csv"), 0, 100)
	mnt := mountDaemon(t, "--dataset", "d="+data, "--batch-size", "10")
	jobs := filepath.Join(mnt, ".zenith", "jobs")
	if out, err := sh(t, `echo '{"name":"long","command":["sleep","31"]}' > `+jobs+`/submit`); err != nil {
		t.Fatalf("submit: %v %s", err, out)
	}
	waitStatus(t, filepath.Join(jobs, "long", "status"), "RUNNING", 10*time.Second)
	pid := daemonPid(t, mnt)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); alive(pid) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	if r := zenith(t, "umount", mnt); r.code != 0 {
		t.Fatalf("umount after the crash: %s", r.stderr)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("umount of the crashed mount took %s (held by the job?)", took)
	}
	sh(t, "pkill -x -f 'sleep 31'")
}
