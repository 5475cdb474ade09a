package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/internal/proc"
)

// testConfig is a Config for tests: n declared GPUs, a fast heartbeat and a
// short grace period.
func testConfig(t *testing.T, n int) Config {
	t.Helper()
	gpus, err := DiscoverGPUs(context.Background(), strconv.Itoa(n), nil)
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		StateDir:     t.TempDir(),
		GPUs:         gpus,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Grace:        500 * time.Millisecond,
		PollInterval: 50 * time.Millisecond,
		MountPoint:   "/mnt/zenith-test",
	}
}

func newTestScheduler(t *testing.T, cfg Config) *Scheduler {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

// spec builds a JSON spec from a map.
func spec(t *testing.T, fields map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// shJob is a spec running script through the shell.
func shJob(t *testing.T, name, script string, extra map[string]any) []byte {
	f := map[string]any{"name": name, "command": []string{script}, "shell": true}
	for k, v := range extra {
		f[k] = v
	}
	return spec(t, f)
}

func mustSubmit(t *testing.T, s *Scheduler, b []byte) JobInfo {
	t.Helper()
	j, err := s.Submit(b)
	if err != nil {
		t.Fatalf("submit %s: %v", b, err)
	}
	return j
}

// waitState polls until the job reaches want, failing on another terminal
// state or after timeout.
func waitState(t *testing.T, s *Scheduler, name string, want State, timeout time.Duration) JobInfo {
	t.Helper()
	return waitJob(t, s, name, string(want), timeout, func(j JobInfo) bool {
		if j.State != want && j.State.Terminal() {
			log, _ := os.ReadFile(j.LogPath)
			t.Fatalf("job %s ended %s (%s), want %s; log:\n%s", name, j.State, j.Reason, want, log)
		}
		return j.State == want
	})
}

func readLog(t *testing.T, j JobInfo) string {
	t.Helper()
	b, err := os.ReadFile(j.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitFile waits until path exists and returns its trimmed content.
func waitFile(t *testing.T, path string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 && strings.HasSuffix(string(b), "\n") {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("file %s did not appear within %v", path, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processGone reports whether pid has exited (gone or a zombie).
func processGone(pid int) bool {
	st, ok := proc.ReadStat(pid)
	return !ok || st.State == 'Z'
}

func waitGone(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive after %v", pid, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// interval is a job's [start, end] in ns, written by the job itself.
type interval struct{ start, end int64 }

func readInterval(t *testing.T, dir, name string) interval {
	t.Helper()
	var iv interval
	b := waitFile(t, filepath.Join(dir, name+".t"), 5*time.Second)
	if _, err := fmt.Sscan(b, &iv.start, &iv.end); err != nil {
		t.Fatalf("interval of %s: %q: %v", name, b, err)
	}
	return iv
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// killGroup SIGKILLs a process group, as a crash or an OOM kill would.
func killGroup(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("no pid")
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
