package slurm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zenithfs/zenithfs/scheduler"
)

// Sentinel errors of this package; test them with errors.Is.
var (
	// ErrUnavailable wraps failures to reach Slurm at all: a missing binary,
	// an unreachable controller, a command that timed out. They are
	// transient: the scheduler should poll again later, not mark jobs LOST.
	ErrUnavailable = errors.New("slurm unavailable")
	// ErrUnknownState is returned by Poll for a job state this runner does
	// not know (a newer Slurm); the job is not guessed into a final state.
	ErrUnknownState = errors.New("unknown Slurm job state")
	// ErrSubmit wraps sbatch refusing a job. When the refusal is about the
	// request itself (no node can ever satisfy it, bad gres…) the error also
	// wraps scheduler.ErrInvalidSpec.
	ErrSubmit = errors.New("sbatch refused the job")
)

// DefaultCommandTimeout bounds every Slurm command the runner executes.
const DefaultCommandTimeout = 30 * time.Second

// DefaultForgottenGrace is Config.ForgottenGrace when unset.
const DefaultForgottenGrace = 10 * time.Minute

// Config configures a Runner. The zero value (but for Logger) works against
// the Slurm found in PATH and the cluster's default partition.
type Config struct {
	// Logger receives submits and cancels at Info, polls at Debug. Nil
	// discards.
	Logger *slog.Logger
	// Partition is passed as --partition; "" means the cluster's default.
	Partition string
	// Workdir is the working directory of jobs whose request has none
	// (sbatch --chdir); "" leaves it to sbatch (the daemon's directory).
	Workdir string
	// LogCap caps each job's log, all attempts together (the scheduler's
	// Config.LogCap): the batch script pipes the command's output through
	// the scheduler's log copier, which drops the excess with a note in
	// the log. <= 0: uncapped (the script execs the command, and Slurm
	// writes its output straight to the log).
	LogCap int64
	// ExtraArgs are appended to every sbatch command line (e.g.
	// "--account=ml", "--qos=high", "--constraint=a100").
	ExtraArgs []string
	// BinDir holds sbatch, scontrol, scancel, sacct and srun; "" means PATH.
	BinDir string
	// ScriptDir, when set, keeps a copy of every batch script as
	// <name>.<attempt>.sbatch (for debugging); otherwise scripts go to sbatch
	// on stdin and are kept only by Slurm.
	ScriptDir string
	// CommandTimeout bounds each Slurm command; 0 means
	// DefaultCommandTimeout.
	CommandTimeout time.Duration
	// JobCompLog is an optional jobcomp/filetxt file (JobCompLoc) that Poll
	// reads for jobs the controller has already forgotten, where sacct is
	// not available. scripts/slurm-up.sh writes /var/log/slurm/jobcomp.log.
	JobCompLog string
	// ForgottenGrace is how long Poll believes sacct about a job the
	// controller no longer knows but accounting still shows PENDING or
	// RUNNING (its end never reached the database, e.g. the controller
	// lost its state) before it reports the job LOST; 0 means
	// DefaultForgottenGrace.
	ForgottenGrace time.Duration
}

func (c Config) bin(name string) string {
	if c.BinDir == "" {
		return name
	}
	return filepath.Join(c.BinDir, name)
}

// Runner runs job attempts as Slurm batch jobs. It keeps no state of its own
// but a clock per job that only sacct still knows (see
// Config.ForgottenGrace): the RunRef is the Slurm job id, so a new Runner
// after a daemon restart polls and cancels the jobs of the old one. It is
// safe for concurrent use.
type Runner struct {
	cfg     Config
	log     *slog.Logger
	timeout time.Duration
	grace   time.Duration // Config.ForgottenGrace

	mu sync.Mutex
	// forgotten: when Poll first found a job ("ID" or "ID;CLUSTER")
	// unknown to the controller while sacct said it was still active.
	forgotten map[string]time.Time
}

var (
	_ scheduler.Runner = (*Runner)(nil)
	_ scheduler.Finder = (*Runner)(nil)
)

// New returns a Runner for cfg. It does not contact Slurm; Ping does.
func New(cfg Config) *Runner {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := cfg.CommandTimeout
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}
	grace := cfg.ForgottenGrace
	if grace <= 0 {
		grace = DefaultForgottenGrace
	}
	cfg.ExtraArgs = append([]string(nil), cfg.ExtraArgs...)
	return &Runner{cfg: cfg, log: log.With("runner", "slurm"), timeout: timeout, grace: grace,
		forgotten: map[string]time.Time{}}
}

// Name is "slurm".
func (r *Runner) Name() string { return "slurm" }

// AllocatesGPUs is true: Slurm places jobs on GPUs (gres) itself.
func (r *Runner) AllocatesGPUs() bool { return true }

// Ping checks that the Slurm controller answers (`scontrol ping`). Startup
// code calls it to fail with one clear line when --jobs slurm has no Slurm.
func (r *Runner) Ping(ctx context.Context) error {
	out, _, err := r.run(ctx, "", "scontrol", "ping")
	if err != nil && !errors.Is(err, ErrUnavailable) && strings.Contains(out, "DOWN") {
		return fmt.Errorf("slurm ping: %s: %w", firstLine(out), ErrUnavailable)
	}
	if err != nil {
		return fmt.Errorf("slurm ping: %w", err)
	}
	if !strings.Contains(out, "is UP") {
		return fmt.Errorf("slurm ping: %s: %w", strings.TrimSpace(out), ErrUnavailable)
	}
	return nil
}

// Start submits one attempt with `sbatch --parsable` and returns the Slurm
// job id (as "ID", or "ID;CLUSTER" on a multi-cluster setup) as its RunRef.
// Requests that can never be valid are rejected before sbatch runs, wrapping
// scheduler.ErrInvalidSpec.
//
// A controller that cannot be reached, an sbatch that times out and a
// refusal for a submit limit (MaxSubmitJobs: too many jobs queued) wrap
// scheduler.ErrTemporary. The first two may hide a job the controller
// accepted: with req.Resubmit, Start first looks for the job carrying the
// request's StartKey (FindStarted) and returns it instead of submitting a
// second copy; when it cannot look, it submits nothing and fails with
// ErrTemporary again.
func (r *Runner) Start(ctx context.Context, req scheduler.RunRequest) (scheduler.RunRef, error) {
	if err := validate(req); err != nil {
		return "", err
	}
	if req.Resubmit && req.StartKey != "" {
		ref, err := r.FindStarted(ctx, req)
		if err != nil {
			return "", fmt.Errorf("job %s: %w: cannot tell whether the last submission went through: %w",
				req.Name, scheduler.ErrTemporary, err)
		}
		if ref != "" {
			r.log.Info("adopted the job an uncertain submission launched", "job", req.Name,
				"attempt", req.Attempt, "slurm_job", string(ref))
			return ref, nil
		}
	}
	// slurmd creates the log file, not its directory.
	if err := os.MkdirAll(filepath.Dir(req.LogPath), 0o755); err != nil {
		return "", fmt.Errorf("job %s: log directory: %w", req.Name, err)
	}
	sub := buildSubmission(req, r.cfg)
	args, stdin := sub.args, sub.script
	if r.cfg.ScriptDir != "" {
		path := filepath.Join(r.cfg.ScriptDir, fmt.Sprintf("%s.%d.sbatch", req.Name, req.Attempt))
		if err := os.MkdirAll(r.cfg.ScriptDir, 0o755); err != nil {
			return "", fmt.Errorf("job %s: script dir: %w", req.Name, err)
		}
		if err := os.WriteFile(path, []byte(sub.script), 0o644); err != nil {
			return "", fmt.Errorf("job %s: write batch script: %w", req.Name, err)
		}
		args, stdin = append(args, path), ""
	}
	out, stderr, err := r.run(ctx, stdin, "sbatch", args...)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			// The controller may be back by the next heartbeat: keep the job.
			return "", fmt.Errorf("job %s: submit: %w: %w", req.Name, scheduler.ErrTemporary, err)
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("job %s: submit: %w", req.Name, err)
		}
		if isSubmitLimit(stderr) {
			// Slurm refused it before queueing it: wait for jobs to end.
			return "", fmt.Errorf("job %s: submit: %w: %w: %s", req.Name, scheduler.ErrTemporary, ErrSubmit, oneLine(stderr))
		}
		if isRequestError(stderr) {
			return "", fmt.Errorf("job %s: %w: %w: %s", req.Name, scheduler.ErrInvalidSpec, ErrSubmit, firstLine(stderr))
		}
		return "", fmt.Errorf("job %s: %w: %w", req.Name, ErrSubmit, err)
	}
	ref, err := parseParsable(out)
	if err != nil {
		return "", fmt.Errorf("job %s: %w", req.Name, err)
	}
	r.log.Info("submitted", "job", req.Name, "attempt", req.Attempt, "slurm_job", string(ref),
		"gpus", req.GPUCount, "nodes", req.Nodes)
	return ref, nil
}

// FindStarted implements scheduler.Finder: it returns the job whose
// comment carries req's StartKey (see buildSubmission), "" when Slurm has
// none. It asks the controller (`squeue --states=all`), so a job that was
// accepted, ran and was purged (after MinJobAge) before the lookup is not
// found; accounting cannot be searched for it, since sacct keeps comments
// only with AccountingStoreFlags=job_comment.
func (r *Runner) FindStarted(ctx context.Context, req scheduler.RunRequest) (scheduler.RunRef, error) {
	if req.StartKey == "" || !jobNameRE.MatchString(req.Name) {
		return "", nil
	}
	args := []string{"--noheader", "--all", "--states=all", "--user=" + strconv.Itoa(os.Getuid()),
		"--name=" + req.Name, "--format=%i|%k"}
	if c := clusterOption(r.cfg.ExtraArgs); c != "" {
		args = append([]string{"--clusters=" + c}, args...)
	}
	out, _, err := r.run(ctx, "", "squeue", args...)
	if err != nil {
		return "", fmt.Errorf("look for job %s: %w", req.Name, err)
	}
	want := submitComment(req)
	var found []scheduler.RunRef
	cluster := ""
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if c, ok := strings.CutPrefix(line, "CLUSTER:"); ok {
			cluster = strings.TrimSpace(c)
			continue
		}
		id, comment, ok := strings.Cut(line, "|")
		if !ok || !jobIDRE.MatchString(id) || strings.TrimSpace(comment) != want {
			continue
		}
		ref := scheduler.RunRef(id)
		if cluster != "" {
			ref = scheduler.RunRef(id + ";" + cluster)
		}
		found = append(found, ref)
	}
	if len(found) == 0 {
		return "", nil
	}
	if len(found) > 1 {
		r.log.Warn("several Slurm jobs carry one attempt's key; adopting the first", "job", req.Name,
			"attempt", req.Attempt, "slurm_jobs", found)
	}
	return found[0], nil
}

// clusterOption returns the value of a --clusters/-M option among args, "".
func clusterOption(args []string) string {
	for i, a := range args {
		for _, p := range []string{"--clusters=", "--cluster=", "-M"} {
			if v, ok := strings.CutPrefix(a, p); ok && v != "" {
				return v
			}
		}
		if (a == "--clusters" || a == "--cluster" || a == "-M") && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// jobIDRE is a Slurm job id as sbatch --parsable prints it (arrays and het
// jobs are not submitted by this runner).
var jobIDRE = regexp.MustCompile(`^[0-9]+$`)

// parseParsable reads `sbatch --parsable` output: "ID" or "ID;CLUSTER" on
// the last non-empty line (sbatch may print warnings before it).
func parseParsable(out string) (scheduler.RunRef, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if _, _, err := parseRef(scheduler.RunRef(last)); err != nil {
		return "", fmt.Errorf("sbatch --parsable printed %q: %w", out, err)
	}
	return scheduler.RunRef(last), nil
}

// parseRef splits a RunRef into job id and cluster ("" for the local one).
func parseRef(ref scheduler.RunRef) (id, cluster string, err error) {
	id, cluster, _ = strings.Cut(string(ref), ";")
	if !jobIDRE.MatchString(id) {
		return "", "", fmt.Errorf("slurm run ref %q: not a job id", string(ref))
	}
	return id, cluster, nil
}

func clusterArgs(cluster string, args ...string) []string {
	if cluster == "" {
		return args
	}
	return append([]string{"--clusters=" + cluster}, args...)
}

// Poll reports the attempt's status from `scontrol show job -d -o`. A job the
// controller no longer knows (finished longer than MinJobAge ago, or state
// lost) is looked up in sacct, then in Config.JobCompLog, and reported Lost
// with a reason when neither knows it. When sacct fails (slurmdbd down, a
// timeout) and the jobcomp log does not know the job, Poll fails with
// ErrUnavailable: the job's end is not known yet, so it is not guessed LOST.
// A job sacct still shows active is reported so for Config.ForgottenGrace,
// then Lost.
func (r *Runner) Poll(ctx context.Context, ref scheduler.RunRef) (scheduler.RunStatus, error) {
	id, cluster, err := parseRef(ref)
	if err != nil {
		// Not a Slurm job: recorded by another runner (the daemon was
		// restarted with another --jobs). Nothing here can find it.
		return scheduler.RunStatus{State: scheduler.Lost, ExitCode: -1, EndedAt: time.Now(),
			Reason: fmt.Sprintf("run %q was started by another runner", ref)}, nil
	}
	out, stderr, err := r.run(ctx, "", "scontrol", clusterArgs(cluster, "show", "job", "-d", "-o", id)...)
	if err != nil && !strings.Contains(stderr, "Invalid job id") {
		return scheduler.RunStatus{}, fmt.Errorf("poll slurm job %s: %w", id, err)
	}
	if err == nil {
		if info, ok := findJob(out, id); ok {
			r.clearForgotten(string(ref))
			st, err := statusFromInfo(info)
			if err != nil {
				return scheduler.RunStatus{}, fmt.Errorf("poll slurm job %s: %w", id, err)
			}
			r.log.Debug("polled", "slurm_job", id, "state", st.State, "reason", st.Reason)
			return st, nil
		}
	}
	return r.pollForgotten(ctx, ref, id, cluster)
}

// pollForgotten looks for a job the controller has dropped.
func (r *Runner) pollForgotten(ctx context.Context, ref scheduler.RunRef, id, cluster string) (scheduler.RunStatus, error) {
	out, stderr, sacctErr := r.run(ctx, "", "sacct", clusterArgs(cluster, "--noheader", "--parsable2", "--allocations",
		"--jobs="+id, "--format=JobID,State,ExitCode,Start,End")...)
	if sacctErr != nil && noAccounting(sacctErr, out+stderr) {
		sacctErr = nil // there is no sacct to ask: not a passing failure
		out = ""
	}
	if sacctErr == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Split(strings.TrimSpace(line), "|")
			if len(f) != 5 || f[0] != id {
				continue
			}
			info := jobInfo{"JobId": {id}, "JobState": {f[1]}, "ExitCode": {f[2]}, "StartTime": {f[3]}, "EndTime": {f[4]}}
			st, err := statusFromInfo(info)
			if err != nil {
				continue
			}
			if !st.State.Terminal() {
				return r.activeButForgotten(ref, id, f[1], st), nil
			}
			r.clearForgotten(string(ref))
			return st, nil
		}
	}
	if r.cfg.JobCompLog != "" {
		if info, ok := scanJobComp(r.cfg.JobCompLog, id); ok {
			if st, err := statusFromInfo(info); err == nil {
				r.clearForgotten(string(ref))
				return st, nil
			}
		}
	}
	if sacctErr != nil {
		if !errors.Is(sacctErr, ErrUnavailable) && ctx.Err() == nil {
			sacctErr = fmt.Errorf("%w: %w", ErrUnavailable, sacctErr)
		}
		return scheduler.RunStatus{}, fmt.Errorf("poll slurm job %s: the controller no longer knows it and sacct cannot say how it ended: %w", id, sacctErr)
	}
	r.clearForgotten(string(ref))
	r.log.Warn("slurm job unknown", "slurm_job", id)
	return scheduler.RunStatus{
		State:    scheduler.Lost,
		ExitCode: -1,
		Reason:   fmt.Sprintf("Slurm no longer knows job %s (purged from the controller, or its state was lost)", id),
		EndedAt:  time.Now(),
	}, nil
}

// activeButForgotten handles a job the controller does not know while sacct
// shows it active (raw is sacct's state): reported as sacct says until it
// has been so for the runner's grace, then Lost.
func (r *Runner) activeButForgotten(ref scheduler.RunRef, id, raw string, st scheduler.RunStatus) scheduler.RunStatus {
	now := time.Now()
	r.mu.Lock()
	since, seen := r.forgotten[string(ref)]
	if !seen {
		since = now
		r.forgotten[string(ref)] = now
	}
	r.mu.Unlock()
	if now.Sub(since) < r.grace {
		if !seen {
			r.log.Warn("slurm job unknown to the controller but active in sacct; waiting", "slurm_job", id,
				"sacct_state", raw, "grace", r.grace)
		}
		return st
	}
	r.clearForgotten(string(ref))
	r.log.Warn("slurm job unknown to the controller; giving up", "slurm_job", id, "sacct_state", raw)
	return scheduler.RunStatus{
		State:    scheduler.Lost,
		ExitCode: -1,
		Reason: fmt.Sprintf("Slurm's controller has not known job %s for %s while accounting still shows it %s: "+
			"its end was never recorded (the controller lost its state?)", id, r.grace.Round(time.Second), raw),
		EndedAt: now,
	}
}

// clearForgotten drops ref's forgotten clock.
func (r *Runner) clearForgotten(ref string) {
	r.mu.Lock()
	delete(r.forgotten, ref)
	r.mu.Unlock()
}

// noAccounting reports whether a failed sacct means there is no accounting
// to ask (none configured, no sacct installed) rather than a passing fault.
func noAccounting(err error, output string) bool {
	return strings.Contains(output, "accounting storage is disabled") ||
		errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist)
}

// scanJobComp returns the last jobcomp/filetxt record of job id.
func scanJobComp(path, id string) (jobInfo, bool) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	prefix := "JobId=" + id + " "
	var found jobInfo
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, prefix) {
			found = parseJobLine(line)
		}
	}
	return found, found != nil
}

// Cancel cancels the job with a plain `scancel`: Slurm sends SIGCONT and
// SIGTERM to every step (the batch script and what it started), waits the
// cluster's KillWait, then sends SIGKILL, and the job ends CANCELLED. grace
// cannot be set per job in Slurm, so KillWait (slurm.conf) takes its place.
// Cancelling a job that already ended is not an error; an unknown job wraps
// scheduler.ErrNotFound.
func (r *Runner) Cancel(ctx context.Context, ref scheduler.RunRef, grace time.Duration) error {
	id, cluster, err := parseRef(ref)
	if err != nil {
		return err
	}
	// -v: without it scancel says nothing about an unknown job.
	_, stderr, err := r.run(ctx, "", "scancel", clusterArgs(cluster, "--verbose", id)...)
	switch {
	case strings.Contains(stderr, "Invalid job id"):
		return fmt.Errorf("cancel slurm job %s: %w", id, scheduler.ErrNotFound)
	case strings.Contains(stderr, "already completing or completed"):
		return nil
	case err != nil:
		return fmt.Errorf("cancel slurm job %s: %w", id, err)
	}
	r.log.Info("cancelled", "slurm_job", id, "grace_ignored", grace)
	return nil
}

// run executes one Slurm command with the runner's timeout and returns its
// stdout and stderr. Failures to reach Slurm wrap ErrUnavailable.
func (r *Runner) run(ctx context.Context, stdin, name string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.cfg.bin(name), args...)
	cmd.WaitDelay = time.Second
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	stdout, stderr := out.String(), errb.String()
	switch {
	case err == nil:
		return stdout, stderr, nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return stdout, stderr, fmt.Errorf("%s: no answer within %v: %w", name, r.timeout, ErrUnavailable)
	case ctx.Err() != nil:
		return stdout, stderr, fmt.Errorf("%s: %w", name, ctx.Err())
	case errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist):
		return stdout, stderr, fmt.Errorf("%s not found (install Slurm, e.g. scripts/slurm-up.sh): %w: %w", name, ErrUnavailable, err)
	case isUnavailable(stderr):
		return stdout, stderr, fmt.Errorf("%s: %s: %w", name, firstLine(stderr), ErrUnavailable)
	}
	msg := firstLine(stderr)
	if msg == "" {
		msg = firstLine(stdout)
	}
	return stdout, stderr, fmt.Errorf("%s: %w: %s", name, err, msg)
}

// isUnavailable recognizes Slurm's messages for a controller it cannot reach.
func isUnavailable(stderr string) bool {
	for _, m := range []string{
		"Unable to contact slurm controller",
		"Socket timed out",
		"Connection refused",
		"Zero Bytes were transmitted",
		"temporarily unable to accept job",
		"Communication connection failure",
		"Munge",
	} {
		if strings.Contains(stderr, m) {
			return true
		}
	}
	return false
}

// limitReasonRE matches the reason code sbatch prints before an
// accounting-policy refusal ("sbatch: error: AssocMaxSubmitJobLimit").
var limitReasonRE = regexp.MustCompile(`(?m)^sbatch: error: ((?:Assoc|QOS)[A-Za-z]*Limit)\s*$`)

// isSubmitLimit recognizes sbatch refusing a job because the user, account
// or QOS has as many jobs queued as it may (MaxSubmitJobs, GrpSubmitJobs):
// it passes as jobs end. An accounting-policy refusal that names another
// limit (a QOS with DenyOnLimit refusing a too-long job) is not one; one
// that names none is taken for one, the commonest cause.
func isSubmitLimit(stderr string) bool {
	if m := limitReasonRE.FindStringSubmatch(stderr); m != nil {
		return strings.Contains(m[1], "Submit")
	}
	return strings.Contains(stderr, "MaxSubmit") || strings.Contains(stderr, "GrpSubmit") ||
		strings.Contains(stderr, "Job violates accounting/QOS policy")
}

// isRequestError recognizes sbatch refusals caused by the request itself,
// which no retry will fix.
func isRequestError(stderr string) bool {
	for _, m := range []string{
		"Requested node configuration is not available",
		"Invalid generic resource",
		"Invalid Trackable RESource",
		"Memory required by task is not available",
		"Requested time limit is invalid",
		"Node count specification invalid",
		"More processors requested than permitted",
		"Requested partition configuration not available",
		"invalid partition specified",
		"Invalid job array specification",
		"unrecognized option",
		"invalid option",
	} {
		if strings.Contains(stderr, m) {
			return true
		}
	}
	return false
}

// oneLine joins the non-empty lines of s with "; ".
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
