package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/zenithfs/zenithfs/internal/sampledata"
)

// These tests run the real binary: mount as a daemon, read through the
// kernel, umount; start-up errors; a killed daemon's stale mount.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zenithfs-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "zenithfs")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code   int
	stdout string
	stderr string
}

func zenith(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return r
}

func mountDaemon(t *testing.T, args ...string) string {
	t.Helper()
	mnt := t.TempDir()
	r := zenith(t, append(append([]string{"mount", "--state-dir", t.TempDir()}, args...), mnt)...)
	if r.code != 0 {
		t.Fatalf("mount failed (%d): %s", r.code, r.stderr)
	}
	t.Cleanup(func() {
		if mounted(mnt) {
			zenith(t, "umount", mnt)
		}
	})
	return mnt
}

func daemonPid(t *testing.T, mnt string) int {
	t.Helper()
	b, err := os.ReadFile(pidFile(mnt))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestDaemonMountReadUmount(t *testing.T) {
	data := t.TempDir()
	if err := sampledata.WriteParquet(filepath.Join(data, "a.parquet"), 5000, 1000); err != nil {
		t.Fatal(err)
	}
	mnt := mountDaemon(t, "--dataset", "train="+data, "--batch-size", "1000", "--gpus", "0")
	if !mounted(mnt) {
		t.Fatal("mount returned but nothing is mounted")
	}
	for k := 0; k < 5; k++ {
		b, err := os.ReadFile(filepath.Join(mnt, "train", fmt.Sprintf("%06d.arrow", k)))
		if err != nil {
			t.Fatal(err)
		}
		r, err := ipc.NewFileReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := r.RecordBatch(0)
		if rec.NumRows() != 1000 {
			t.Fatalf("batch %d: %d rows", k, rec.NumRows())
		}
	}
	stats, err := os.ReadFile(filepath.Join(mnt, ".zenith", "stats"))
	if err != nil || !strings.Contains(string(stats), `"prefetch"`) {
		t.Fatalf("stats: %v %s", err, stats)
	}
	pid := daemonPid(t, mnt)
	if r := zenith(t, "umount", mnt); r.code != 0 {
		t.Fatalf("umount: %s", r.stderr)
	}
	if mounted(mnt) {
		t.Fatal("still mounted after umount")
	}
	if alive(pid) {
		t.Fatal("daemon still running after umount")
	}
}

func TestStartupErrorsAreOneClearLine(t *testing.T) {
	data := t.TempDir()
	sampledata.WriteCSV(filepath.Join(data, "a.csv"), 0, 10)
	notEmpty := t.TempDir()
	os.WriteFile(filepath.Join(notEmpty, "x"), nil, 0o644)
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	unsupported := t.TempDir()
	os.WriteFile(filepath.Join(unsupported, "notes.txt"), []byte("hi"), 0o644)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"mount", "--bogus", "1", "--dataset", "d=" + data, "MNT"}, "bogus"},
		{"bad batch size", []string{"mount", "--batch-size", "0", "--dataset", "d=" + data, "MNT"}, "batch-size"},
		{"bad cache size", []string{"mount", "--cache-size", "lots", "--dataset", "d=" + data, "MNT"}, "cache-size"},
		{"no dataset", []string{"mount", "MNT"}, "no datasets"},
		{"dataset without =", []string{"mount", "--dataset", data, "MNT"}, "NAME=URI"},
		{"missing path", []string{"mount", "--dataset", "d=/no/such/dir", "MNT"}, "/no/such/dir"},
		{"bad scheme", []string{"mount", "--dataset", "d=ftp://x/y", "MNT"}, "unsupported URI"},
		{"no supported files", []string{"mount", "--dataset", "d=" + unsupported, "MNT"}, "no supported source files"},
		{"mountpoint not empty", []string{"mount", "--dataset", "d=" + data, notEmpty}, "not empty"},
		{"mountpoint is a file", []string{"mount", "--dataset", "d=" + data, file}, "not a directory"},
		{"mountpoint missing", []string{"mount", "--dataset", "d=" + data, "/no/such/mnt"}, "/no/such/mnt"},
		{"bad io-uring", []string{"mount", "--io-uring", "maybe", "--dataset", "d=" + data, "MNT"}, "io-uring"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mnt := t.TempDir()
			args := append([]string(nil), c.args...)
			for i := range args {
				if args[i] == "MNT" {
					args[i] = mnt
				}
			}
			args = append([]string{args[0], "--state-dir", t.TempDir()}, args[1:]...)
			if c.name == "no dataset" {
				args = []string{"mount", mnt}
			}
			r := zenith(t, args...)
			if r.code == 0 {
				t.Fatalf("exit 0, want failure")
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], c.want) {
				t.Fatalf("stderr %q: want one line containing %q", r.stderr, c.want)
			}
			if mounted(mnt) {
				t.Fatal("a failed start left a mount behind")
			}
		})
	}
}

func TestUmountClearsStaleMountOfKilledDaemon(t *testing.T) {
	data := t.TempDir()
	sampledata.WriteCSV(filepath.Join(data, "a.csv"), 0, 100)
	mnt := mountDaemon(t, "--dataset", "d="+data, "--batch-size", "10")
	pid := daemonPid(t, mnt)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(mnt, "d")); err == nil {
		t.Fatal("the mount still answers after its daemon was killed")
	}
	// A new mount on the stale mountpoint is refused with a hint.
	if r := zenith(t, "mount", "--state-dir", t.TempDir(), "--dataset", "d="+data, mnt); r.code == 0 || !strings.Contains(r.stderr, "umount") {
		t.Fatalf("mount over a stale mount: code %d, %s", r.code, r.stderr)
	}
	if r := zenith(t, "umount", mnt); r.code != 0 {
		t.Fatalf("umount of a stale mount: %s", r.stderr)
	}
	if mounted(mnt) {
		t.Fatal("stale mount still there")
	}
	mountDaemon(t, "--dataset", "d="+data) // the directory is usable again
}

func TestForegroundUnmountsOnSIGTERM(t *testing.T) {
	data := t.TempDir()
	sampledata.WriteCSV(filepath.Join(data, "a.csv"), 0, 100)
	mnt := t.TempDir()
	cmd := exec.Command(binary, "mount", "--foreground", "--state-dir", t.TempDir(), "--dataset", "d="+data, mnt)
	var se bytes.Buffer
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !mounted(mnt) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !mounted(mnt) {
		cmd.Process.Kill()
		t.Fatalf("foreground mount never came up: %s", se.String())
	}
	if _, err := os.ReadFile(filepath.Join(mnt, "d", "000000.arrow")); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("foreground exit: %v\n%s", err, se.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("foreground daemon did not exit on SIGTERM")
	}
	if mounted(mnt) {
		t.Fatal("still mounted after SIGTERM")
	}
}
