package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zenithfs/zenithfs/internal/proc"
)

// wrapperScript runs the job's argv as a child of a small /bin/sh that is the
// process-group leader. It traps TERM (the trap is reset to the default in
// the job by exec), waits for the job, and records the job's exit status in
// the exit file, so that the status survives a daemon restart: an adopted
// process is not our child and cannot be waited for.
const wrapperScript = `ex=$1; shift
trap : TERM INT HUP
"$@"
s=$?
echo "$s" > "$ex"
exit "$s"`

// wrapperName is the wrapper's $0, by which FindStarted knows it.
const wrapperName = "zenith-job"

// LogCopierScript copies a job's output into its log, keeping the log
// within a cap: run as /bin/sh -c LogCopierScript zenith-log LEFT CAP with
// the output on stdin and the log (opened for append) on stdout, where
// LEFT is what the cap leaves of the log (< 0: no cap) and CAP the cap,
// for the note. The local runner and scheduler/slurm's batch script use it.
//
// Here it copies the job's output pipe into the log file. It runs as a
// separate process in its own process group, so it outlives a crashed daemon
// (the job never sees a broken pipe) and is not hit by the signals sent to
// the job. Past the cap it keeps reading and drops the bytes, so the job
// never blocks; it notes the truncation in the log. head's stdout is made
// unbuffered (coreutils stdbuf) so that the log grows as the job writes.
const LogCopierScript = `cap=$1
if [ "$cap" -lt 0 ]; then exec cat; fi
if command -v stdbuf >/dev/null 2>&1; then stdbuf -o0 head -c "$cap"; else head -c "$cap"; fi
if [ "$(head -c 1 | wc -c)" -gt 0 ]; then
  printf '\n[zenithfs: the log reached its cap of %s bytes; further output is dropped]\n' "$2"
  n=$(wc -c)
  printf '[zenithfs: %s bytes dropped]\n' "$((n+1))"
fi`

// copierWait bounds how long an attempt's end waits for its log copier: a
// background child of the job may hold the pipe open after the job ended.
const copierWait = 2 * time.Second

// LocalConfig configures a LocalRunner.
type LocalConfig struct {
	Logger  *slog.Logger
	LogCap  int64  // log size cap in bytes over all attempts; <= 0: unlimited
	Workdir string // working directory for specs without one
}

// LocalRunner runs attempts as local processes, each in its own process
// group. It implements Runner.
type LocalRunner struct {
	cfg LocalConfig
	log *slog.Logger

	mu     sync.Mutex
	procs  map[RunRef]*localProc // attempts started by this runner
	notify func()
}

type localProc struct {
	ref     localRef
	started time.Time
	done    chan struct{} // closed when the attempt ended; status is then set
	status  RunStatus
}

var _ Runner = (*LocalRunner)(nil)

// NewLocalRunner returns a runner of local processes.
func NewLocalRunner(cfg LocalConfig) *LocalRunner {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &LocalRunner{cfg: cfg, log: log, procs: map[RunRef]*localProc{}}
}

// Name implements Runner.
func (r *LocalRunner) Name() string { return "local" }

// AllocatesGPUs implements Runner: the scheduler allocates local GPUs.
func (r *LocalRunner) AllocatesGPUs() bool { return false }

// SetNotify registers f, called (without locks held) whenever an attempt
// started by this runner ends, so the scheduler need not wait for its next
// poll.
func (r *LocalRunner) SetNotify(f func()) {
	r.mu.Lock()
	r.notify = f
	r.mu.Unlock()
}

// PID returns the process id of an attempt (0 if ref is not local).
func (r *LocalRunner) PID(ref RunRef) int {
	lr, err := parseLocalRef(ref)
	if err != nil {
		return 0
	}
	return lr.pid
}

// jobEnv is the daemon's environment with the spec's env and the scheduler's
// variables on top.
func jobEnv(req RunRequest) []string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for k, v := range req.Env {
		env[k] = v
	}
	idx := make([]string, len(req.GPUs))
	for i, g := range req.GPUs {
		idx[i] = strconv.Itoa(g)
	}
	env["CUDA_VISIBLE_DEVICES"] = strings.Join(idx, ",")
	// The indices are nvidia-smi's, which numbers GPUs in PCI bus order;
	// CUDA's default order is fastest first, which on a machine with mixed
	// models would make index 1 another card than the one handed out.
	env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
	env["ZENITH_JOB_NAME"] = req.Name
	env["ZENITH_MOUNT"] = req.MountPoint
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Start implements Runner.
func (r *LocalRunner) Start(ctx context.Context, req RunRequest) (RunRef, error) {
	if len(req.Command) == 0 {
		return "", fmt.Errorf("start %s: %w: empty command", req.Name, ErrInvalidSpec)
	}
	if err := os.MkdirAll(filepath.Dir(req.LogPath), 0o755); err != nil {
		return "", fmt.Errorf("start %s: %w", req.Name, err)
	}
	logf, err := os.OpenFile(req.LogPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return "", fmt.Errorf("start %s: open log: %w", req.Name, err)
	}
	defer logf.Close()
	capLeft := int64(-1)
	if r.cfg.LogCap > 0 {
		capLeft = 0
		if fi, err := logf.Stat(); err == nil && fi.Size() < r.cfg.LogCap {
			capLeft = r.cfg.LogCap - fi.Size()
		}
	}
	if req.Attempt > 1 && capLeft != 0 {
		fmt.Fprintf(logf, "[zenithfs: attempt %d]\n", req.Attempt)
	}
	exitPath := attemptExitPath(req)
	_ = os.Remove(exitPath)

	pr, pw, err := os.Pipe()
	if err != nil {
		return "", fmt.Errorf("start %s: pipe: %w", req.Name, err)
	}
	copier := exec.Command("/bin/sh", "-c", LogCopierScript, "zenith-log", strconv.FormatInt(capLeft, 10), strconv.FormatInt(r.cfg.LogCap, 10))
	copier.Stdin, copier.Stdout, copier.Stderr = pr, logf, logf
	copier.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := copier.Start(); err != nil {
		pr.Close()
		pw.Close()
		return "", fmt.Errorf("start %s: log copier: %w", req.Name, err)
	}
	pr.Close()

	argv := req.Command
	if req.Shell {
		argv = []string{"/bin/sh", "-c", req.Command[0]}
	}
	workdir := req.Workdir
	if workdir == "" {
		workdir = r.cfg.Workdir
	}
	cmd := exec.Command("/bin/sh", append([]string{"-c", wrapperScript, wrapperName, exitPath}, argv...)...)
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.Dir = workdir
	cmd.Env = jobEnv(req)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	pw.Close() // the copier sees EOF once the job and its children are gone
	if err != nil {
		go copier.Wait() //nolint:errcheck // reaps the copier, which ends at EOF
		return "", fmt.Errorf("start %s: %w", req.Name, err)
	}
	pid := cmd.Process.Pid
	// Not found would mean it exited and was reaped already: impossible,
	// since only Wait reaps; the zero start time then never matches.
	st, _ := proc.ReadStat(pid)
	start := st.Start
	lp := &localProc{ref: localRef{pid: pid, start: start, exitPath: exitPath}, started: time.Now(), done: make(chan struct{})}
	ref := lp.ref.encode()
	r.mu.Lock()
	r.procs[ref] = lp
	r.mu.Unlock()
	copierDone := make(chan struct{})
	go func() {
		_ = copier.Wait()
		close(copierDone)
	}()
	go r.wait(cmd, lp, copierDone)
	r.log.Debug("job started", "job", req.Name, "attempt", req.Attempt, "pid", pid, "gpus", req.GPUs)
	return ref, nil
}

// attemptExitPath is where the wrapper of attempt req records its exit
// status: .BASE.N.exit beside the log (BASE the log's name without .log),
// unique to the submission and the attempt.
func attemptExitPath(req RunRequest) string {
	return fmt.Sprintf("%s%d.exit", exitPrefix(req.LogPath), req.Attempt)
}

// exitPrefix is the path of the exit files beside the log logPath up to
// the attempt number: DIR/.BASE.
func exitPrefix(logPath string) string {
	return filepath.Join(filepath.Dir(logPath), "."+strings.TrimSuffix(filepath.Base(logPath), ".log")+".")
}

// exitFiles are the exit files of every attempt of the job whose log is
// logPath (only digits between the prefix and .exit: the names of other
// jobs may extend BASE with dots).
func exitFiles(logPath string) []string {
	prefix := exitPrefix(logPath)
	ents, _ := os.ReadDir(filepath.Dir(logPath))
	var out []string
	for _, e := range ents {
		p := filepath.Join(filepath.Dir(logPath), e.Name())
		n, ok := strings.CutPrefix(p, prefix)
		if !ok {
			continue
		}
		attempt, ok := strings.CutSuffix(n, ".exit")
		if _, err := strconv.Atoi(attempt); ok && err == nil {
			out = append(out, p)
		}
	}
	return out
}

// FindStarted implements Finder: the attempt of req that an earlier Start
// launched, found after a daemon died between launching it and recording
// it. Its wrapper is found among the running processes by its arguments
// (the attempt's exit file is one); one that already ended is found by the
// exit file it left, and is reported with pid 0 (Poll reads its status,
// Cancel has nothing to stop). "" when the attempt was never launched.
func (r *LocalRunner) FindStarted(ctx context.Context, req RunRequest) (RunRef, error) {
	exitPath := attemptExitPath(req)
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return "", fmt.Errorf("find %s: %w", req.Name, err)
	}
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) < 5 || args[0] != "/bin/sh" || args[3] != wrapperName || args[4] != exitPath {
			continue
		}
		// Ours only: another user's process could mimic the arguments.
		if fi, err := os.Stat(filepath.Join("/proc", e.Name())); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
			continue
		}
		ref := localRef{pid: pid, exitPath: exitPath}
		if st, ok := proc.ReadStat(pid); ok {
			ref.start = st.Start
			if ref.alive() {
				return ref.encode(), nil
			}
		}
	}
	if _, ok := readExitFile(exitPath); ok {
		return localRef{exitPath: exitPath}.encode(), nil
	}
	return "", nil
}

// wait reaps the wrapper, records the attempt's status and notifies.
func (r *LocalRunner) wait(cmd *exec.Cmd, lp *localProc, copierDone <-chan struct{}) {
	err := cmd.Wait()
	st := RunStatus{StartedAt: lp.started, EndedAt: time.Now(), ExitCode: -1}
	var ee *exec.ExitError
	switch {
	case err == nil:
		st.ExitCode = 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			st.Reason = "killed by " + ws.Signal().String()
		} else {
			st.ExitCode = ee.ExitCode()
		}
	default:
		st.Reason = err.Error()
	}
	if st.ExitCode == 0 {
		st.State = Completed
	} else {
		st.State = Failed
		if st.Reason == "" {
			st.Reason = fmt.Sprintf("exit code %d", st.ExitCode)
		}
	}
	select {
	case <-copierDone:
	case <-time.After(copierWait):
	}
	r.mu.Lock()
	lp.status = st
	close(lp.done)
	notify := r.notify
	r.mu.Unlock()
	if notify != nil {
		notify()
	}
}

// Poll implements Runner. Attempts started by this runner report their
// waited-for status; adopted ones (started before a daemon restart) are
// checked by pid and start time, and their exit status read from the exit
// file the wrapper wrote. A process that is gone without an exit file is
// Lost.
func (r *LocalRunner) Poll(ctx context.Context, ref RunRef) (RunStatus, error) {
	r.mu.Lock()
	lp, own := r.procs[ref]
	r.mu.Unlock()
	if own {
		select {
		case <-lp.done:
			return lp.status, nil
		default:
			return RunStatus{State: Running, StartedAt: lp.started, ExitCode: -1}, nil
		}
	}
	lr, err := parseLocalRef(ref)
	if err != nil {
		// Not ours: recorded by another runner (the daemon was restarted
		// with another --jobs). Nothing local can find it.
		return RunStatus{State: Lost, ExitCode: -1, EndedAt: time.Now(),
			Reason: fmt.Sprintf("run %q was started by another runner", ref)}, nil
	}
	if lr.alive() {
		return RunStatus{State: Running, ExitCode: -1}, nil
	}
	code, ok := readExitFile(lr.exitPath)
	if !ok {
		return RunStatus{State: Lost, ExitCode: -1, EndedAt: time.Now(),
			Reason: fmt.Sprintf("process %d is gone and left no exit status", lr.pid)}, nil
	}
	st := RunStatus{ExitCode: code, EndedAt: time.Now(), State: Completed}
	if code != 0 {
		st.State = Failed
		st.Reason = fmt.Sprintf("exit code %d", code)
	}
	return st, nil
}

// Cancel implements Runner: SIGTERM to the attempt's process group now, and
// SIGKILL to the group after grace if anything of it remains.
func (r *LocalRunner) Cancel(ctx context.Context, ref RunRef, grace time.Duration) error {
	lr, err := parseLocalRef(ref)
	if err != nil {
		return err
	}
	if lr.pid == 0 {
		return nil // an attempt found ended (FindStarted): nothing runs
	}
	// A pid now held by a process with another start time is someone
	// else's: our group is gone (Linux never reuses a pid that is still in
	// use as a process-group id). Otherwise signal the group, which may
	// outlive its leader.
	if st, ok := proc.ReadStat(lr.pid); ok && st.Start != lr.start {
		return nil
	}
	if err := syscall.Kill(-lr.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("cancel pid %d: %w", lr.pid, err)
	}
	go func() {
		time.Sleep(grace)
		if st, ok := proc.ReadStat(lr.pid); ok && st.Start != lr.start {
			return // pid reused by an unrelated process
		}
		if err := syscall.Kill(-lr.pid, syscall.SIGKILL); err == nil {
			r.log.Info("job did not stop after SIGTERM; sent SIGKILL", "pid", lr.pid, "grace", grace)
		}
	}()
	return nil
}
