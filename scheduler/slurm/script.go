package slurm

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zenithfs/zenithfs/scheduler"
)

// envNameRE is what a name must look like to be exported from a POSIX shell.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// jobNameRE mirrors the spec's name rule (product.md §4); the runner checks
// it again because the name goes into sbatch's argv and the script.
var jobNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// startKeyRE is what a RunRequest.StartKey may hold: it goes into the
// job's comment, which FindStarted matches.
var startKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]{0,64}$`)

// CheckLogDir reports whether Slurm can write job logs under path: sbatch
// strips backslashes from --output, so a job whose log path has one fails
// to launch (JobLaunchFailure), writing to a directory that is not there.
func CheckLogDir(path string) error {
	if strings.ContainsRune(path, '\\') {
		return fmt.Errorf("path %q: Slurm cannot write job logs under a path with a backslash (use a --state-dir without one)", path)
	}
	return nil
}

// submission is what Start hands to sbatch: its options (argv, never parsed
// by a shell) and the batch script read from stdin.
type submission struct {
	args   []string
	script string
}

// validate rejects requests sbatch must never see. Every error wraps
// scheduler.ErrInvalidSpec.
func validate(req scheduler.RunRequest) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", scheduler.ErrInvalidSpec, fmt.Sprintf(format, a...))
	}
	switch {
	case !jobNameRE.MatchString(req.Name):
		return bad("job name %q: want 1-64 letters, digits, '-', '_', '.'", req.Name)
	case len(req.Command) == 0 || req.Command[0] == "":
		return bad("job %s: empty command", req.Name)
	case req.Shell && len(req.Command) != 1:
		return bad("job %s: a shell command is one string, got %d", req.Name, len(req.Command))
	case req.LogPath == "" || !filepath.IsAbs(req.LogPath):
		return bad("job %s: log path %q must be absolute", req.Name, req.LogPath)
	case CheckLogDir(req.LogPath) != nil:
		return bad("job %s: %v", req.Name, CheckLogDir(req.LogPath))
	case req.Workdir != "" && !filepath.IsAbs(req.Workdir):
		return bad("job %s: workdir %q must be absolute", req.Name, req.Workdir)
	case !startKeyRE.MatchString(req.StartKey):
		return bad("job %s: start key %q: want at most 64 letters, digits, '-', '_'", req.Name, req.StartKey)
	case req.GPUCount < 0 || req.CPUs < 0 || req.MemoryBytes < 0 || req.TimeLimit < 0 ||
		req.Retries < 0 || req.Nodes < 0 || req.TasksPerNode < 0:
		return bad("job %s: negative resource request", req.Name)
	}
	for _, s := range append([]string{req.LogPath, req.Workdir, req.MountPoint}, req.Command...) {
		if strings.ContainsRune(s, 0) {
			return bad("job %s: NUL byte in command or path", req.Name)
		}
	}
	for k, v := range req.Env {
		if !envNameRE.MatchString(k) {
			return bad("job %s: environment variable name %q", req.Name, k)
		}
		if strings.ContainsRune(v, 0) {
			return bad("job %s: NUL byte in environment variable %s", req.Name, k)
		}
	}
	return nil
}

// buildSubmission turns a request into sbatch options and a script. The
// request must have passed validate.
//
// Options go on sbatch's command line rather than in #SBATCH lines because
// sbatch does not shell-parse argv: a log path with spaces needs no quoting.
// The script exports the environment with single-quoted values and execs the
// command with every argument single-quoted, so nothing in the spec is
// interpreted by a shell unless the spec asked for one.
func buildSubmission(req scheduler.RunRequest, cfg Config) submission {
	args := []string{
		"--parsable",
		"--job-name=" + req.Name,
		// Both streams into the one file the control tree serves; append so a
		// requeued or retried attempt does not erase the previous one's log.
		"--output=" + escapeFilenamePattern(req.LogPath),
		"--error=" + escapeFilenamePattern(req.LogPath),
		"--open-mode=append",
		"--comment=" + submitComment(req),
	}
	if cfg.Partition != "" {
		args = append(args, "--partition="+cfg.Partition)
	}
	if wd := req.Workdir; wd != "" {
		args = append(args, "--chdir="+wd)
	} else if cfg.Workdir != "" {
		args = append(args, "--chdir="+cfg.Workdir)
	}
	if req.GPUCount > 0 {
		args = append(args, "--gres=gpu:"+strconv.Itoa(req.GPUCount))
	}
	if req.CPUs > 0 {
		args = append(args, "--cpus-per-task="+strconv.Itoa(req.CPUs))
	}
	if req.MemoryBytes > 0 {
		args = append(args, "--mem="+strconv.FormatInt(ceilDiv(req.MemoryBytes, 1<<20), 10)+"M")
	}
	if req.TimeLimit > 0 {
		args = append(args, "--time="+formatTimeLimit(req.TimeLimit))
	}
	if req.Retries > 0 {
		args = append(args, "--requeue")
	} else {
		args = append(args, "--no-requeue")
	}
	if req.Nodes > 0 {
		args = append(args, "--nodes="+strconv.Itoa(req.Nodes))
	}
	if req.TasksPerNode > 0 {
		args = append(args, "--ntasks-per-node="+strconv.Itoa(req.TasksPerNode))
	}
	args = append(args, cfg.ExtraArgs...)
	return submission{args: args, script: buildScript(req, cfg)}
}

// submitComment is the job's --comment: "zenithfs job NAME attempt N",
// followed by " key KEY" when the request has a StartKey, by which
// FindStarted recognizes the job after an uncertain submission.
func submitComment(req scheduler.RunRequest) string {
	c := "zenithfs job " + req.Name + " attempt " + strconv.Itoa(req.Attempt)
	if req.StartKey != "" {
		c += " key " + req.StartKey
	}
	return c
}

// buildScript writes the batch script: exports, then exec of the command —
// through srun (one copy per task) when the job has several nodes or tasks.
func buildScript(req scheduler.RunRequest, cfg Config) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	fmt.Fprintf(&b, "# zenithfs job %s, attempt %d (written by zenithfs scheduler/slurm).\n", req.Name, req.Attempt)
	keys := make([]string, 0, len(req.Env))
	for k := range req.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(req.Env[k]))
	}
	// After the spec's env, so these are authoritative.
	fmt.Fprintf(&b, "export ZENITH_JOB_NAME=%s\n", shellQuote(req.Name))
	fmt.Fprintf(&b, "export ZENITH_JOB_ATTEMPT=%d\n", req.Attempt)
	fmt.Fprintf(&b, "export ZENITH_MOUNT=%s\n", shellQuote(req.MountPoint))
	// Slurm's GPU indices, like nvidia-smi's, follow the PCI bus; CUDA's
	// default order is fastest first.
	b.WriteString("export CUDA_DEVICE_ORDER=PCI_BUS_ID\n")

	argv := req.Command
	if req.Shell {
		argv = []string{"/bin/sh", "-c", req.Command[0]}
	}
	srun := req.Nodes > 1 || req.TasksPerNode > 1
	if srun {
		// One copy of the command per task; a task that fails ends the others.
		argv = append([]string{cfg.bin("srun"), "--kill-on-bad-exit=1"}, argv...)
	}
	var cmd strings.Builder
	for i, a := range argv {
		if i > 0 {
			cmd.WriteByte(' ')
		}
		cmd.WriteString(shellQuote(a))
	}
	if cfg.LogCap > 0 {
		writeCapped(&b, cmd.String(), req.LogPath, cfg.LogCap, srun)
	}
	b.WriteString("exec " + cmd.String() + "\n")
	return b.String()
}

// cappedRun runs the command with its output through the log copier
// (scheduler.LogCopierScript), which appends at most what the cap leaves
// of the log (all attempts together: the log's size is read at the start)
// and drops the rest with a note. Parameters: %[1]s the command, %[2]s
// the log path, %[3]d the cap, %[4]s the copier script, %[5]s the exit
// statuses to end with as a signal, all quoted.
//
// The copier reads a FIFO; it ignores the SIGTERM that Slurm sends every
// process of a cancelled job, so that what the job writes while it stops
// still reaches the log. The script waits for the command (a signal trap
// defers until it ends), closes the FIFO, then, ignoring further signals,
// gives the copier up to 2 s to drain it, and ends as the command did.
// A shell sees a command killed by signal N as exit status 128+N; for the
// signals that end a training job (HUP INT KILL PIPE ALRM TERM USR1 USR2,
// and, with core dumps off so that the job's own core stays, QUIT ILL
// ABRT FPE SEGV BUS) the script kills itself with the same signal, so
// that Slurm reports a signal as it did when the script exec'd the
// command; any other status (and every status of srun, whose 128+N is
// its own convention) is its exit status. A command that exits 128+N by
// itself reads as killed by N. Where no FIFO can be made the command runs
// uncapped (the exec after this block).
const cappedRun = `zenith_used=$(wc -c < %[2]s 2>/dev/null)
zenith_left=$((%[3]d - ${zenith_used:-0}))
[ "$zenith_left" -gt 0 ] || zenith_left=0
if zenith_dir=$(mktemp -d "${TMPDIR:-/tmp}/zenith-log.XXXXXX") && mkfifo "$zenith_dir/out"; then
  (trap '' TERM INT HUP; exec /bin/sh -c %[4]s zenith-log "$zenith_left" %[3]d) < "$zenith_dir/out" &
  zenith_copier=$!
  exec 3> "$zenith_dir/out"
  rm -rf "$zenith_dir"
  trap : TERM INT HUP
  %[1]s >&3 2>&3 3>&-
  zenith_status=$?
  exec 3>&-
  trap '' TERM INT HUP
  (sleep 2; kill -9 "$zenith_copier") 2>/dev/null &
  zenith_dog=$!
  wait "$zenith_copier"
  kill "$zenith_dog" 2>/dev/null
  case " %[5]s " in
  *" $zenith_status "*)
    ulimit -c 0
    trap - TERM INT HUP
    kill -$((zenith_status - 128)) $$ ;;
  esac
  exit "$zenith_status"
fi
`

// reraised are the signals a capped script re-raises (see cappedRun).
var reraised = []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGILL, syscall.SIGABRT,
	syscall.SIGBUS, syscall.SIGFPE, syscall.SIGKILL, syscall.SIGUSR1, syscall.SIGSEGV, syscall.SIGUSR2,
	syscall.SIGPIPE, syscall.SIGALRM, syscall.SIGTERM}

// writeCapped writes cappedRun for cmd (quoted argv) into the script;
// srun: cmd is srun, whose exit statuses are never re-raised.
func writeCapped(b *strings.Builder, cmd, logPath string, logCap int64, srun bool) {
	var codes []string
	if !srun {
		for _, sig := range reraised {
			codes = append(codes, strconv.Itoa(128+int(sig)))
		}
	}
	fmt.Fprintf(b, cappedRun, cmd, shellQuote(logPath), logCap, shellQuote(scheduler.LogCopierScript), strings.Join(codes, " "))
}

// shellQuote single-quotes s for a POSIX shell: the only character that needs
// care inside single quotes is the quote itself.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// escapeFilenamePattern protects a path from sbatch's filename patterns
// (%j, %x, …): "%%" is a literal percent sign. (A path with a backslash,
// which Slurm strips, is refused by validate.)
func escapeFilenamePattern(p string) string {
	return strings.ReplaceAll(p, "%", "%%")
}

// formatTimeLimit writes d as sbatch's "D-HH:MM:SS", rounded up to a second
// (Slurm itself rounds up to whole minutes).
func formatTimeLimit(d time.Duration) string {
	secs := ceilDiv(int64(d), int64(time.Second))
	days := secs / 86400
	secs %= 86400
	return fmt.Sprintf("%d-%02d:%02d:%02d", days, secs/3600, secs/60%60, secs%60)
}

func ceilDiv(a, b int64) int64 {
	return (a + b - 1) / b
}
