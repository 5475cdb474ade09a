package main

import (
	"context"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zenithfs/zenithfs/format"
	"github.com/zenithfs/zenithfs/internal/sampledata"
)

func TestUnreadableSourceIsAStartError(t *testing.T) {
	denied := fmt.Errorf("dataset d: index a.parquet: %w", &iofs.PathError{Op: "open", Path: "/d/a.parquet", Err: syscall.EACCES})
	if !unreadable(denied) {
		t.Errorf("%v: not a start-up error", denied)
	}
	if corrupt := fmt.Errorf("dataset d: %w", format.ErrCorrupt); unreadable(corrupt) {
		t.Errorf("%v: a corrupt source stopped the start", corrupt)
	}
}

// A busy mount has its jobs stopped, once, and is unmounted again every
// second after the signal; a second signal detaches it.
func TestUnmountOnSignalRetriesThenDetaches(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	unmounted := make(chan struct{})
	var tries, detached, stops atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		unmountOnSignal(ctx, sigs, unmounted, func() error { tries.Add(1); return syscall.EBUSY },
			func() error { detached.Add(1); return nil }, func() { stops.Add(1) }, slog.New(slog.DiscardHandler))
	}()
	cancel() // the first signal
	deadline := time.Now().Add(5 * time.Second)
	for tries.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("unmount tried %d times in 5 s while busy, want a retry", tries.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	sigs <- syscall.SIGINT // the second
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a second signal did not end the wait")
	}
	if detached.Load() != 1 || stops.Load() != 1 {
		t.Fatalf("detached %d times, stopped the jobs %d times; want 1, 1", detached.Load(), stops.Load())
	}
}

func TestRealPathResolvesLinksAsMountinfoShowsThem(t *testing.T) {
	top, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(top, "real")
	if err := os.MkdirAll(filepath.Join(real, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(top, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(real, "mnt"), filepath.Join(top, "mntlink")); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		filepath.Join(top, "link", "mnt"):        filepath.Join(real, "mnt"),
		filepath.Join(top, "mntlink"):            filepath.Join(real, "mnt"),
		filepath.Join(top, "link", "mnt") + "/.": filepath.Join(real, "mnt"),
		filepath.Join(top, "link", "absent"):     filepath.Join(real, "absent"),
	} {
		if got, err := realPath(in); err != nil || got != want {
			t.Errorf("realPath(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
}

// A --state-dir Slurm cannot write job logs under (sbatch strips
// backslashes from --output: every job would fail to launch) stops a
// --jobs slurm start with the reason, before anything is mounted.
func TestSlurmStateDirWithBackslashIsAStartError(t *testing.T) {
	state, data, mnt := filepath.Join(t.TempDir(), `a\b`), t.TempDir(), t.TempDir()
	if err := sampledata.WriteParquet(filepath.Join(data, "a.parquet"), 100, 100); err != nil {
		t.Fatal(err)
	}
	r := zenith(t, "mount", "--jobs", "slurm", "--state-dir", state, "--dataset", "d="+data, mnt)
	if r.code == 0 || !strings.Contains(r.stderr, "backslash") {
		if mounted(mnt) {
			zenith(t, "umount", mnt)
		}
		t.Fatalf("mount with state dir %q: exit %d, stderr %q; want a start error naming the backslash", state, r.code, r.stderr)
	}
	if mounted(mnt) {
		t.Fatal("mounted despite the error")
	}
}
