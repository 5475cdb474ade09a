package scheduler

import (
	"context"
	"time"
)

// State is a job's state, as the control tree shows it.
type State string

// The states of product.md §4.
const (
	Pending   State = "PENDING"
	Running   State = "RUNNING"
	Completed State = "COMPLETED"
	Failed    State = "FAILED"
	Cancelled State = "CANCELLED"
	Timeout   State = "TIMEOUT"
	Lost      State = "LOST"
)

// Terminal reports whether s is a final state.
func (s State) Terminal() bool {
	switch s {
	case Completed, Failed, Cancelled, Timeout, Lost:
		return true
	}
	return false
}

// RunRequest is everything a Runner needs to start one attempt of a job.
type RunRequest struct {
	Name         string            // job name (validated)
	Attempt      int               // 1 for the first run, 2 for the first retry, …
	Command      []string          // argv; with Shell, a single shell string in Command[0] run by /bin/sh -c
	Shell        bool              // run through /bin/sh -c
	Env          map[string]string // extra environment (on top of the daemon's)
	Workdir      string            // working directory; "" means the state dir's default
	GPUs         []int             // GPU indices the scheduler allocated (local runner); nil for runners that allocate GPUs themselves
	GPUCount     int               // GPUs requested
	CPUs         int               // CPUs requested (0: unspecified)
	MemoryBytes  int64             // memory requested (0: unspecified)
	TimeLimit    time.Duration     // 0: none
	LogPath      string            // file that receives stdout and stderr
	Retries      int               // retries allowed (Slurm maps >0 to --requeue)
	Nodes        int               // multi-node (Slurm); 0 or 1 for one node
	TasksPerNode int               // Slurm --ntasks-per-node; 0: unspecified
	MountPoint   string            // exported as ZENITH_MOUNT
	// StartKey identifies this attempt's submission: it stays the same
	// when Start is called again for the same attempt, and differs
	// between attempts and between jobs (also of the same name).
	StartKey string
	// Resubmit is set when an earlier Start with the same StartKey may
	// have launched the attempt after all: it failed with ErrTemporary
	// (sbatch timed out after the controller may have accepted the job),
	// or the daemon stopped during it. A runner that can find such a
	// launch (Slurm, by the job's comment) adopts it instead of starting
	// a second copy.
	Resubmit bool
}

// RunRef identifies a started attempt so that it can be polled and cancelled,
// also after a daemon restart: it is persisted in the job store. For the local
// runner it encodes pid and process start time; for Slurm, the job id.
type RunRef string

// RunStatus is what a Runner reports about one attempt.
type RunStatus struct {
	State     State     // Pending, Running, or a terminal state
	ExitCode  int       // meaningful once terminal (-1 if killed by a signal or unknown)
	Reason    string    // human-readable reason (Slurm's reason, "time limit", "process gone", …)
	StartedAt time.Time // zero until running
	EndedAt   time.Time // zero until terminal
	GPUs      []int     // GPUs the attempt holds, when the runner knows them (Slurm)
}

// Runner starts, observes and stops job attempts. The queue, GPU allocation
// and job store are shared by all runners; a runner only runs things.
// Implementations are safe for concurrent use.
type Runner interface {
	// Name is "local" or "slurm".
	Name() string
	// AllocatesGPUs reports whether the runner places jobs on GPUs itself
	// (Slurm). When false the scheduler allocates GPUs and passes them in
	// RunRequest.GPUs.
	AllocatesGPUs() bool
	// Start launches one attempt and returns at once with its reference.
	// An error wrapping ErrTemporary keeps the job pending: Start is
	// called again later for the same attempt, with the same StartKey
	// and Resubmit set.
	Start(ctx context.Context, req RunRequest) (RunRef, error)
	// Poll reports the attempt's current status. An attempt the runner
	// cannot find any more is reported Lost with a reason.
	Poll(ctx context.Context, ref RunRef) (RunStatus, error)
	// Cancel stops the attempt: SIGTERM (or scancel), then SIGKILL after
	// grace. It returns once the signal is sent; Poll reports the end.
	Cancel(ctx context.Context, ref RunRef, grace time.Duration) error
}

// Finder is implemented by runners whose Start can fail after the attempt
// was launched (Slurm: sbatch timing out while the controller accepts the
// job), or whose launch a daemon can die before recording (the local
// runner; New adopts what it finds). FindStarted returns the reference of the attempt an earlier Start
// with req.StartKey launched, "" when there is none; an error means it
// cannot tell now. The scheduler asks before it gives up on such an
// attempt (a job cancelled while its start was being retried), so that no
// launched attempt is left running untracked.
type Finder interface {
	FindStarted(ctx context.Context, req RunRequest) (RunRef, error)
}
