package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// The daemon protocol: `zenithfs mount` (without --foreground) re-executes
// itself with --foreground in a new session, handing it the write end of a
// pipe as fd 3 (ZENITHFS_READY_FD=3). The child writes lines to it:
//
//	progress NAME DONE TOTAL   index progress, drawn as a bar on the parent's TTY
//	ready                      the mount is up: the parent exits 0
//	error MESSAGE              start-up failed: the parent prints it, exits 1
//
// If the pipe closes without either, the child died: the parent says so and
// points at the log.

const readyEnv = "ZENITHFS_READY_FD"

// notifier reports start-up progress to a waiting parent, if any.
type notifier struct{ f *os.File }

func newNotifier() *notifier {
	if os.Getenv(readyEnv) == "" {
		return &notifier{}
	}
	fd, err := strconv.Atoi(os.Getenv(readyEnv))
	if err != nil {
		return &notifier{}
	}
	os.Unsetenv(readyEnv) // jobs started by the daemon must not inherit it
	return &notifier{f: os.NewFile(uintptr(fd), "ready")}
}

// daemon reports whether this process is the daemon zenithfs mount
// started (it reports readiness to its parent), not a --foreground one.
func (n *notifier) daemon() bool { return n.f != nil }

func (n *notifier) send(format string, args ...any) {
	if n.f != nil {
		fmt.Fprintf(n.f, format+"\n", args...)
	}
}

func (n *notifier) ready() {
	n.send("ready")
	n.close()
}

func (n *notifier) fail(err error) {
	n.send("error %s", strings.ReplaceAll(err.Error(), "\n", " "))
	n.close()
}

func (n *notifier) close() {
	if n.f != nil {
		n.f.Close()
		n.f = nil
	}
}

// daemonize starts the foreground daemon in the background and waits until
// it reports ready or failed.
func daemonize(args []string, logFile string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find own executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd := exec.Command(exe, append([]string{"mount", "--foreground"}, args...)...)
	cmd.Env = append(os.Environ(), readyEnv+"=3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	// What the runtime itself prints (a fatal error, a panic outside the
	// FUSE handlers' guards) goes to the log file rather than nowhere.
	if lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
		defer lf.Close()
		cmd.Stderr = lf
	}
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	w.Close()
	go cmd.Wait() // reap it if it dies while we wait; it outlives us otherwise
	var bar *progressbar.ProgressBar
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "ready":
			if bar != nil {
				bar.Finish()
				fmt.Fprintln(os.Stderr)
			}
			return nil
		case strings.HasPrefix(line, "error "):
			return fmt.Errorf("%s", strings.TrimPrefix(line, "error "))
		case strings.HasPrefix(line, "progress ") && tty:
			var name string
			var done, total int64
			if _, err := fmt.Sscanf(line, "progress %s %d %d", &name, &done, &total); err == nil {
				if bar == nil || bar.GetMax64() != total {
					bar = progressbar.NewOptions64(total, progressbar.OptionSetDescription("indexing "+name),
						progressbar.OptionSetWriter(os.Stderr), progressbar.OptionThrottle(100*time.Millisecond),
						progressbar.OptionShowCount())
				}
				bar.Set64(done)
			}
		}
	}
	return fmt.Errorf("the daemon exited during start-up; see its log %s", logFile)
}

// progressReporter returns the index progress callback: to the waiting
// parent in daemon mode, as a bar on a TTY in foreground mode.
func progressReporter(n *notifier) func(name string, done, total int64) {
	var mu sync.Mutex
	if n.f != nil {
		var last time.Time
		return func(name string, done, total int64) {
			mu.Lock()
			defer mu.Unlock()
			if done == total || time.Since(last) > 100*time.Millisecond {
				last = time.Now()
				n.send("progress %s %d %d", name, done, total)
			}
		}
	}
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	bars := map[string]*progressbar.ProgressBar{}
	return func(name string, done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		b := bars[name]
		if b == nil {
			b = progressbar.NewOptions64(total, progressbar.OptionSetDescription("indexing "+name),
				progressbar.OptionSetWriter(os.Stderr), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionShowCount())
			bars[name] = b
		}
		b.Set64(done)
	}
}
