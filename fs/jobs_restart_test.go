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

// jobsDaemonEnv makes TestRestartAfterKill9 play the daemon: "stateDir|mnt".
const jobsDaemonEnv = "ZENITH_JOBS_TEST_DAEMON"

// TestRestartAfterKill9 runs a daemon (this test binary, re-executed) that
// serves the jobs tree, kills it with SIGKILL while one job runs, one waits
// for its GPU and one will vanish, then mounts a new daemon over the same
// state dir: the running job is adopted and finishes with its log intact
// (written while no daemon ran), the vanished one is LOST, the pending one
// runs.
func TestRestartAfterKill9(t *testing.T) {
	if v := os.Getenv(jobsDaemonEnv); v != "" {
		jobsServeUntilKilled(t, v)
		return
	}
	state, work := t.TempDir(), t.TempDir()
	mnt1 := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRestartAfterKill9$", "-test.count=1")
	cmd.Env = append(os.Environ(), jobsDaemonEnv+"="+state+"|"+mnt1)
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
	jobsMustEcho(t, jobs1, fmt.Sprintf(`{"name":"survivor","command":["sh","-c","echo started; while [ ! -e %s ]; do sleep 0.01; done; echo finished"],"gpus":1}`, gate))
	jobsPoll(t, jobs1, "survivor", "RUNNING", 5*time.Second)
	jobsMustEcho(t, jobs1, `{"name":"vanisher","command":["sleep","1000"]}`)
	jobsPoll(t, jobs1, "vanisher", "RUNNING", 5*time.Second)
	jobsMustEcho(t, jobs1, `{"name":"queued","command":["sh","-c","echo queued ran"],"gpus":1}`)
	if st := jobsCat(t, jobs1, "queued"); st != "PENDING\n" {
		t.Fatalf("queued is %q, want PENDING", st)
	}
	vpid := int(jobsStatusJSON(t, jobs1, "vanisher")["pid"].(float64))

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

	jobs2, _ := jobsMount(t, jobsSchedConfig(t, state, 1))
	if st := jobsCat(t, jobs2, "survivor"); st != "RUNNING\n" {
		t.Fatalf("survivor after restart: %q, want RUNNING (adopted)", st)
	}
	jobsPoll(t, jobs2, "vanisher", "LOST", 5*time.Second)
	if r := jobsStatusJSON(t, jobs2, "vanisher")["reason"].(string); !strings.Contains(r, "restart") || !strings.Contains(r, "gone") {
		t.Fatalf("LOST reason %q", r)
	}
	if gpus := string(jobsRead(t, filepath.Join(jobs2, "..", "gpus"))); gpus != "0\tdeclared\t-\tsurvivor\n" {
		t.Fatalf("gpus after restart = %q", gpus)
	}
	if st := jobsCat(t, jobs2, "queued"); st != "PENDING\n" {
		t.Fatalf("queued after restart: %q, want PENDING behind the adopted job", st)
	}
	os.WriteFile(gate, nil, 0o644)
	jobsPoll(t, jobs2, "survivor", "COMPLETED", 5*time.Second)
	jobsPoll(t, jobs2, "queued", "COMPLETED", 5*time.Second)
	if ec := jobsStatusJSON(t, jobs2, "survivor")["exit_code"]; ec != 0.0 {
		t.Fatalf("adopted exit code %v, want 0", ec)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		log := string(jobsRead(t, filepath.Join(jobs2, "survivor", "log")))
		if log == "started\nfinished\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("survivor log %q, want both lines", log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if log := string(jobsRead(t, filepath.Join(jobs2, "queued", "log"))); log != "queued ran\n" {
		t.Fatalf("queued log %q", log)
	}
}

// serveUntilKilled is the daemon side of TestRestartAfterKill9.
func jobsServeUntilKilled(t *testing.T, v string) {
	state, mnt, ok := strings.Cut(v, "|")
	if !ok {
		t.Fatalf("%s=%q", jobsDaemonEnv, v)
	}
	s, err := scheduler.New(jobsSchedConfig(t, state, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jobsServe(mnt, s); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	select {} // until SIGKILL
}
