package benchkit

import (
	"bytes"
	"encoding/json"
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

// ProcCPU is a process's user+system CPU time so far (utime+stime of
// /proc/PID/stat).
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu of %d: malformed stat", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu of %d: malformed stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks, nil
}

// ProcCPUSeconds is ProcCPU in seconds, 0 when it cannot be read.
func ProcCPUSeconds(pid int) float64 {
	d, _ := ProcCPU(pid)
	return d.Seconds()
}

// SelfCPU is this process's user+system CPU time so far (all threads).
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Memory is a process's resident memory now and at its peak, in bytes.
type Memory struct{ RSS, HWM int64 }

// ProcMemory reads VmRSS and VmHWM from /proc/PID/status.
func ProcMemory(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("memory of %d: %w", pid, err)
	}
	var m Memory
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			m.RSS = n << 10
		case "VmHWM":
			m.HWM = n << 10
		}
	}
	return m, nil
}

// ProcessAlive tells whether pid runs. A zombie (state Z) has exited: its
// parent (the short-lived mount command, now gone) will not reap it
// before init does.
func ProcessAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// DaemonPID finds the zenithfs daemon serving mnt: the process started as
// `zenithfs mount --foreground … mnt` (the daemonized child).
func DaemonPID(mnt string) (int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("find daemon: %w", err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) < 3 || args[1] != "mount" || args[2] != "--foreground" || args[len(args)-1] != mnt {
			continue
		}
		return pid, nil
	}
	return 0, fmt.Errorf("find daemon: no zenithfs process serves %s", mnt)
}

// Umount runs `bin umount mnt` (bin: the zenithfs binary).
func Umount(bin, mnt string) error {
	out, err := exec.Command(bin, "umount", mnt).CombinedOutput()
	if err != nil {
		return fmt.Errorf("zenithfs umount %s: %w: %s", mnt, err, bytes.TrimSpace(out))
	}
	return nil
}

// DropCaches empties the kernel's page cache, dentries and inodes (needs
// root), so the next read of a file comes from the disk.
func DropCaches() error {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	return nil
}

// DaemonPeak is a zenithfs daemon's peak memory: its VmHWM, or, where it
// caches batches as memfds (outside its RSS), the peak of RSS + memfds that
// it samples itself (.zenith/stats memfds.peak_rss_plus_memfds_bytes under
// mnt), whichever is higher.
func DaemonPeak(pid int, mnt string) (int64, error) {
	m, err := ProcMemory(pid)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(filepath.Join(mnt, ".zenith", "stats"))
	if err != nil {
		return m.HWM, nil // not a zenithfs mount, or no control tree
	}
	var st struct {
		Memfds *struct {
			PeakTotal int64 `json:"peak_rss_plus_memfds_bytes"`
		} `json:"memfds"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, fmt.Errorf("stats of %s: %w", mnt, err)
	}
	if st.Memfds != nil {
		return max(m.HWM, st.Memfds.PeakTotal), nil
	}
	return m.HWM, nil
}
