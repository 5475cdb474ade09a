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

	"github.com/zenithfs/zenithfs/internal/proc"
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
		if !errors.Is(err, errBusy) || pid <= 0 || !alive(pid) {
			return err
		}
		// Busy. When only the daemon's own jobs hold the mount (a trainer
		// reading batch files), unmounting means stopping them, as an
		// unmount does anyway: the daemon, told to shut down, stops its
		// jobs when the mount is busy and then unmounts.
		holders, hidden := mountHolders(abs)
		if hidden {
			// Processes this user cannot inspect may be the ones inside:
			// stopping the jobs could leave the mount busy all the same.
			return fmt.Errorf("%w (processes this user may not inspect may hold it)", err)
		}
		var others []string
		for _, h := range holders {
			if !descendantOf(h, pid) {
				others = append(others, fmt.Sprintf("%d (%s)", h, procName(h)))
			}
		}
		if len(holders) == 0 || len(others) > 0 {
			if len(others) > 0 {
				return fmt.Errorf("%w; held by pid %s", err, strings.Join(others, ", "))
			}
			return err
		}
		fmt.Fprintf(os.Stderr, "zenithfs: %s is busy with the daemon's running jobs; stopping them and unmounting\n", abs)
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			return fmt.Errorf("unmount %s: stop daemon %d: %w", abs, pid, err)
		}
		if !waitGone(pid, jobStopTimeout) {
			return fmt.Errorf("unmount %s: the daemon (pid %d) stopped its jobs but the mount is still busy after %s", abs, pid, jobStopTimeout)
		}
		return nil
	}
	// Wait for the daemon to notice and exit, so that a following mount
	// or a test sees a clean slate.
	if pid > 0 {
		waitGone(pid, 10*time.Second)
	}
	return nil
}

// errBusy: the mount is in use (a process has a file open there, or its
// working directory).
var errBusy = errors.New("busy (a process has a file open there)")

// jobStopTimeout bounds how long umount waits for a daemon stopping its
// jobs: their grace period (10 s by default) and then some.
const jobStopTimeout = 45 * time.Second

func unmount(p string, stale bool) error {
	if os.Geteuid() == 0 {
		flags := 0
		if stale {
			flags = syscall.MNT_DETACH
		}
		err := syscall.Unmount(p, flags)
		if errors.Is(err, syscall.EBUSY) && !stale {
			return fmt.Errorf("unmount %s: %w", p, errBusy)
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
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "busy") {
			return fmt.Errorf("fusermount3 %s: %s: %w", strings.Join(args, " "), msg, errBusy)
		}
		return fmt.Errorf("fusermount3 %s: %v: %s", strings.Join(args, " "), err, msg)
	}
	return nil
}

// mountHolders lists the processes whose working or root directory,
// executable, open files or mapped files are inside the mount at p;
// hidden: some process's descriptors could not be inspected (another
// user's, for a user who is not root).
func mountHolders(p string) (pids []int, hidden bool) {
	inside := func(path string) bool { return path == p || strings.HasPrefix(path, p+"/") }
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, true
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		dir := "/proc/" + e.Name()
		held := false
		for _, l := range []string{"cwd", "root", "exe"} {
			if t, err := os.Readlink(dir + "/" + l); err == nil && inside(t) {
				held = true
			}
		}
		fds, err := os.ReadDir(dir + "/fd")
		if errors.Is(err, os.ErrPermission) {
			hidden = true
		}
		if err == nil && !held {
			for _, fd := range fds {
				if t, err := os.Readlink(dir + "/fd/" + fd.Name()); err == nil && inside(t) {
					held = true
					break
				}
			}
		}
		if maps, err := os.ReadFile(dir + "/maps"); err == nil && !held {
			for _, line := range strings.Split(string(maps), "\n") {
				if i := strings.Index(line, " /"); i >= 0 && inside(strings.TrimSpace(line[i:])) {
					held = true
					break
				}
			}
		}
		if held {
			pids = append(pids, pid)
		}
	}
	return pids, hidden
}

// descendantOf reports whether pid is a descendant of ancestor.
func descendantOf(pid, ancestor int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		st, ok := proc.ReadStat(pid)
		if !ok {
			return false
		}
		if pid = st.PPID; pid == ancestor {
			return true
		}
	}
	return false
}

// procName is pid's command name, from /proc/PID/comm.
func procName(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
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
	st, ok := proc.ReadStat(pid)
	return ok && st.Alive()
}
