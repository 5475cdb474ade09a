package main

import (
	"bufio"
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
	abs, err := filepath.Abs(args[0])
	if err != nil {
		return err
	}
	abs = filepath.Clean(abs)
	if !mounted(abs) {
		return fmt.Errorf("%s is not mounted", abs)
	}
	_, statErr := os.Stat(abs)
	stale := errors.Is(statErr, syscall.ENOTCONN)
	if err := unmount(abs, stale); err != nil {
		return err
	}
	// Wait for the daemon to notice and exit, so that a following mount
	// or a test sees a clean slate.
	waitDaemonGone(abs, 10*time.Second)
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

// waitDaemonGone waits until no process has a pid file for p, or timeout.
func waitDaemonGone(p string, timeout time.Duration) {
	pf := pidFile(p)
	b, err := os.ReadFile(pf)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		return
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			os.Remove(pf)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
