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
	"time"

	"github.com/zenithfs/zenithfs/bench/internal/benchkit"
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
	// Passthrough adds --passthrough (cached batches as memfds the kernel
	// reads itself).
	Passthrough bool
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
	if o.Passthrough {
		args = append(args, "--passthrough")
	}
	args = append(args, o.Mount)
	start := time.Now()
	out, err := exec.Command(o.Bin, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("zenithfs %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	d := &Daemon{Opts: o, MountDur: time.Since(start)}
	d.PID, err = benchkit.DaemonPID(o.Mount)
	if err != nil {
		d.Unmount()
		return nil, err
	}
	return d, nil
}

// Unmount unmounts and waits for the daemon to exit, so the next mount
// of the same state dir does not race its locks.
func (d *Daemon) Unmount() error {
	err := benchkit.Umount(d.Opts.Bin, d.Opts.Mount)
	if d.PID > 0 {
		deadline := time.Now().Add(20 * time.Second)
		for benchkit.ProcessAlive(d.PID) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if benchkit.ProcessAlive(d.PID) {
			return errors.Join(err, fmt.Errorf("daemon %d still running 20s after umount", d.PID))
		}
	}
	return err
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

// CPU is the daemon's user+system CPU time so far.
func (d *Daemon) CPU() (time.Duration, error) {
	return benchkit.ProcCPU(d.PID)
}
