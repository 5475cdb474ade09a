package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pidFile is where the daemon serving mnt records its pid, in a runtime
// directory independent of --state-dir so that umount finds it.
func pidFile(mnt string) string {
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	h := sha256.Sum256([]byte(mnt))
	return filepath.Join(dir, fmt.Sprintf("zenithfs-%d", os.Getuid()), hex.EncodeToString(h[:8])+".pid")
}

func writePidFile(cfg *Config) error {
	p := pidFile(cfg.MountPoint)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(fmt.Sprintf("%d\n%s\n", os.Getpid(), cfg.MountPoint)), 0o644)
}

func removePidFile(cfg *Config) { os.Remove(pidFile(cfg.MountPoint)) }

// realPath is p made absolute with its symbolic links resolved, as the
// kernel lists mount points (/proc/self/mountinfo); a mount point that is
// itself stale (ENOTCONN) is resolved through its parent, which is not.
func realPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	abs = filepath.Clean(abs)
	dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return abs, nil // the checks that follow say what is wrong with it
	}
	full := filepath.Join(dir, filepath.Base(abs))
	if fi, err := os.Lstat(full); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if r, err := filepath.EvalSymlinks(full); err == nil {
			full = r
		}
	}
	return full, nil
}

// mounted reports whether p is a mount point, from /proc/self/mountinfo.
func mounted(p string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMount(fields[4]) == p {
			return true
		}
	}
	return false
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// cmdUmount unmounts cleanly, and clears a stale mount left by a daemon
// that died (the kernel answers ENOTCONN there): a lazy detach.
func cmdUmount(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: zenithfs umount MOUNTPOINT")
	}
	abs, err := realPath(args[0])
	if err != nil {
		return err
	}
	if !mounted(abs) {
		return fmt.Errorf("%s is not mounted", abs)
	}
	_, statErr := os.Stat(abs)
	stale := errors.Is(statErr, syscall.ENOTCONN)
	pid := daemonPidOf(abs)
	if err := unmount(abs, stale); err != nil {
		return err
	}
	// Wait for the daemon to notice and exit, so that a following mount
	// or a test sees a clean slate.
	if pid > 0 {
		waitGone(pid, 10*time.Second)
	}
	return nil
}

func unmount(p string, stale bool) error {
	if os.Geteuid() == 0 {
		flags := 0
		if stale {
			flags = syscall.MNT_DETACH
		}
		err := syscall.Unmount(p, flags)
		if errors.Is(err, syscall.EBUSY) && !stale {
			return fmt.Errorf("unmount %s: busy (a process has a file open there)", p)
		}
		if err != nil {
			if err2 := syscall.Unmount(p, syscall.MNT_DETACH); err2 != nil {
				return fmt.Errorf("unmount %s: %w", p, err)
			}
		}
		return nil
	}
	args := []string{"-u", p}
	if stale {
		args = []string{"-uz", p}
	}
	out, err := exec.Command("fusermount3", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fusermount3 %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// daemonPidOf returns the pid recorded for the daemon serving p, or 0.
func daemonPidOf(p string) int {
	b, err := os.ReadFile(pidFile(p))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		return 0
	}
	return pid
}

// waitGone waits until pid has exited (a zombie counts as exited: in a
// container the daemon's adoptive parent may never reap it).
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	state := b[i+2]
	return state != 'Z' && state != 'X'
}
