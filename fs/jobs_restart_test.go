package fs

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/scheduler"
)

// daemonEnv makes TestRestartAfterKill9 play the daemon: "stateDir|mnt".
const daemonEnv = "ZENITH_JOBS_TEST_DAEMON"

// TestRestartAfterKill9 runs a daemon (this test binary, re-executed) that
// serves the jobs tree, kills it with SIGKILL while one job runs, one waits
// for its GPU and one will vanish, then mounts a new daemon over the same
// state dir: the running job is adopted and finishes with its log intact
// (written while no daemon ran), the vanished one is LOST, the pending one
// runs.
func TestRestartAfterKill9(t *testing.T) {
	if v := os.Getenv(daemonEnv); v != "" {
		serveUntilKilled(t, v)
		return
	}
	state, work := t.TempDir(), t.TempDir()
	mnt1 := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRestartAfterKill9$", "-test.count=1")
	cmd.Env = append(os.Environ(), daemonEnv+"="+state+"|"+mnt1)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
		syscall.Unmount(mnt1, syscall.MNT_DETACH)
	})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- nil
				return
			}
		}
		ready <- fmt.Errorf("daemon exited before it was ready: %v", sc.Err())
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon not ready after 30s")
	}

	jobs1 := filepath.Join(mnt1, ".zenith", "jobs")
	gate := filepath.Join(work, "gate")
	mustEchoSubmit(t, jobs1, fmt.Sprintf(`{"name":"survivor","command":["sh","-c","echo started; while [ ! -e %s ]; do sleep 0.01; done; echo finished"],"gpus":1}`, gate))
	pollStatus(t, jobs1, "survivor", "RUNNING", 5*time.Second)
	mustEchoSubmit(t, jobs1, `{"name":"vanisher","command":["sleep","1000"]}`)
	pollStatus(t, jobs1, "vanisher", "RUNNING", 5*time.Second)
	mustEchoSubmit(t, jobs1, `{"name":"queued","command":["sh","-c","echo queued ran"],"gpus":1}`)
	if st := catStatus(t, jobs1, "queued"); st != "PENDING\n" {
		t.Fatalf("queued is %q, want PENDING", st)
	}
	vpid := int(readStatusJSON(t, jobs1, "vanisher")["pid"].(float64))

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed = true
	if err := syscall.Unmount(mnt1, syscall.MNT_DETACH); err != nil {
		t.Fatalf("clear the dead mount: %v", err)
	}
	// While no daemon runs: one job's process vanishes without an exit
	// status; the survivor keeps running and logging.
	if err := syscall.Kill(-vpid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill vanisher %d: %v", vpid, err)
	}
	time.Sleep(100 * time.Millisecond)

	jobs2, _ := mountJobs(t, testSchedConfig(t, state, 1))
	if st := catStatus(t, jobs2, "survivor"); st != "RUNNING\n" {
		t.Fatalf("survivor after restart: %q, want RUNNING (adopted)", st)
	}
	pollStatus(t, jobs2, "vanisher", "LOST", 5*time.Second)
	if r := readStatusJSON(t, jobs2, "vanisher")["reason"].(string); !strings.Contains(r, "restart") || !strings.Contains(r, "gone") {
		t.Fatalf("LOST reason %q", r)
	}
	if gpus := string(mustRead(t, filepath.Join(jobs2, "..", "gpus"))); gpus != "0\tdeclared\t-\tsurvivor\n" {
		t.Fatalf("gpus after restart = %q", gpus)
	}
	if st := catStatus(t, jobs2, "queued"); st != "PENDING\n" {
		t.Fatalf("queued after restart: %q, want PENDING behind the adopted job", st)
	}
	os.WriteFile(gate, nil, 0o644)
	pollStatus(t, jobs2, "survivor", "COMPLETED", 5*time.Second)
	pollStatus(t, jobs2, "queued", "COMPLETED", 5*time.Second)
	if ec := readStatusJSON(t, jobs2, "survivor")["exit_code"]; ec != 0.0 {
		t.Fatalf("adopted exit code %v, want 0", ec)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		log := string(mustRead(t, filepath.Join(jobs2, "survivor", "log")))
		if log == "started\nfinished\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("survivor log %q, want both lines", log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if log := string(mustRead(t, filepath.Join(jobs2, "queued", "log"))); log != "queued ran\n" {
		t.Fatalf("queued log %q", log)
	}
}

// serveUntilKilled is the daemon side of TestRestartAfterKill9.
func serveUntilKilled(t *testing.T, v string) {
	state, mnt, ok := strings.Cut(v, "|")
	if !ok {
		t.Fatalf("%s=%q", daemonEnv, v)
	}
	s, err := scheduler.New(testSchedConfig(t, state, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := serveJobs(mnt, s); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	select {} // until SIGKILL
}
