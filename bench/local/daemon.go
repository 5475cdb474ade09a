package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// MountOpts are the zenithfs flags a benchmark arm varies.
type MountOpts struct {
	Bin       string
	Name      string // dataset name
	Source    string // dataset URI
	StateDir  string
	Mount     string
	BatchSize int
	CacheSize string
	Prefetch  int
	Workers   int
	IOUring   string
	// MetricsAddr, when set, enables the daemon's metrics and pprof
	// endpoint (used only by -profile).
	MetricsAddr string
}

// Daemon is a running zenithfs mount.
type Daemon struct {
	Opts     MountOpts
	PID      int
	MountDur time.Duration // until `zenithfs mount` returned (ready)
	Attempts int           // mount attempts it took (1 unless retried)
}

// Mount starts a daemon and waits until the mount is ready. A failed
// mount is retried twice (the machine is shared with other FUSE users, and
// a mount has been seen to fail once at INIT with ENODEV); retries are
// logged.
func Mount(o MountOpts) (*Daemon, error) {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var d *Daemon
		if d, err = mountOnce(o); err == nil {
			d.Attempts = attempt
			return d, nil
		}
		log.Printf("mount attempt %d of %s failed: %v", attempt, o.Mount, err)
		exec.Command(o.Bin, "umount", o.Mount).Run() // clear whatever is left; errors expected
		time.Sleep(time.Duration(attempt) * 500 * time.Millisecond)
	}
	return nil, err
}

func mountOnce(o MountOpts) (*Daemon, error) {
	if err := os.MkdirAll(o.Mount, 0o755); err != nil {
		return nil, fmt.Errorf("mountpoint: %w", err)
	}
	args := []string{"mount",
		"--dataset", o.Name + "=" + o.Source,
		"--batch-size", strconv.Itoa(o.BatchSize),
		"--cache-size", o.CacheSize,
		"--prefetch", strconv.Itoa(o.Prefetch),
		"--workers", strconv.Itoa(o.Workers),
		"--io-uring", o.IOUring,
		"--state-dir", o.StateDir,
	}
	if o.MetricsAddr != "" {
		args = append(args, "--metrics-addr", o.MetricsAddr)
	}
	args = append(args, o.Mount)
	start := time.Now()
	out, err := exec.Command(o.Bin, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("zenithfs %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	d := &Daemon{Opts: o, MountDur: time.Since(start)}
	d.PID, err = daemonPID(o.Mount)
	if err != nil {
		d.Unmount()
		return nil, err
	}
	return d, nil
}

// daemonPID finds the daemon serving mnt: the process started as
// `zenithfs mount --foreground … mnt` (the daemonized child).
func daemonPID(mnt string) (int, error) {
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

// Unmount unmounts and waits for the daemon to exit, so the next mount
// of the same state dir does not race its locks.
func (d *Daemon) Unmount() error {
	out, err := exec.Command(d.Opts.Bin, "umount", d.Opts.Mount).CombinedOutput()
	if err != nil {
		err = fmt.Errorf("zenithfs umount %s: %w: %s", d.Opts.Mount, err, bytes.TrimSpace(out))
	}
	if d.PID > 0 {
		deadline := time.Now().Add(20 * time.Second)
		for processAlive(d.PID) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if processAlive(d.PID) {
			return errors.Join(err, fmt.Errorf("daemon %d still running 20s after umount", d.PID))
		}
	}
	return err
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie (state Z) has exited; its parent (the short-lived mount
	// command, now gone) will not reap it before init does.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// Memory is the daemon's resident memory now and at its peak, in bytes.
type Memory struct{ RSS, HWM int64 }

// Memory reads VmRSS and VmHWM from /proc/PID/status.
func (d *Daemon) Memory() (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.PID))
	if err != nil {
		return Memory{}, fmt.Errorf("daemon memory: %w", err)
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

// Stats is .zenith/stats decoded generically: the benchmark reads the
// counters it knows and reports any io_uring/pread counters it finds,
// whatever their exact names.
type Stats map[string]any

// ReadStats reads MNT/.zenith/stats.
func (d *Daemon) ReadStats() (Stats, error) {
	b, err := os.ReadFile(filepath.Join(d.Opts.Mount, ".zenith", "stats"))
	if err != nil {
		return nil, fmt.Errorf("read stats: %w", err)
	}
	var s Stats
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode stats: %w", err)
	}
	return s, nil
}

// Num returns the number at a dotted path ("prefetch.prefetch_hits"), or
// 0 when absent.
func (s Stats) Num(path string) float64 {
	var cur any = map[string]any(s)
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return 0
		}
		cur = m[p]
	}
	f, _ := cur.(float64)
	return f
}

// Matching returns every leaf (number, bool or string) whose dotted path
// contains one of the words (case-insensitive), formatted.
func (s Stats) Matching(words ...string) map[string]string {
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, c := range t {
				walk(strings.TrimPrefix(prefix+"."+k, "."), c)
			}
		case []any:
			for i, c := range t {
				walk(fmt.Sprintf("%s[%d]", prefix, i), c)
			}
		default:
			l := strings.ToLower(prefix)
			for _, w := range words {
				if strings.Contains(l, w) {
					out[prefix] = fmt.Sprint(t)
					return
				}
			}
		}
	}
	walk("", map[string]any(s))
	return out
}

// FormatCounters renders counters as "a=1, b=2" in path order.
func FormatCounters(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%s", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// dropCaches drops the kernel's page cache (and dentries and inodes), so
// the next read of a source file comes from the disk. It reports whether
// the kernel allowed it.
func dropCaches() error {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	return nil
}

// CPU is the daemon's user+system CPU time so far.
func (d *Daemon) CPU() (time.Duration, error) {
	return procCPU(d.PID)
}

// procCPU reads utime+stime of a process from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
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

// selfCPU is this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
