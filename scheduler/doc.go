// Package scheduler is the GPU job scheduler behind the .zenith control tree:
// spec parsing and validation, a priority queue with backfill, exclusive GPU
// allocation, runners (local processes; Slurm), and a persistent job store.
// It knows nothing of FUSE or datasets.
//
// # Specs
//
// ParseSpec reads a JSON object (unknown fields rejected) or, when the text
// does not start with '{', a YAML mapping with the same fields. A Validator
// checks names ([A-Za-z0-9._-]{1,64}, not "submit"/"errors"/"."/".."),
// the argv command (no shell unless "shell": true, in which case command is
// one command-line string for /bin/sh -c; metacharacters in an argv reach
// the program literally), workdir (absolute, existing directory), env keys,
// the GPU count against the GPUs that exist, time limits and memory sizes,
// NUL bytes, and a configurable list of forbidden regular expressions
// (DefaultForbidden: rm -rf /, mkfs, fork bombs, dd onto a disk, a workdir
// in /proc or /sys) — a guard against accidents, not a sandbox: jobs run
// with the daemon's privileges. Every rejection wraps ErrInvalidSpec with the
// reason; a taken name is ErrExists. Scheduler.Errors keeps the latest
// reasons for .zenith/jobs/errors.
//
// # Queue and GPUs
//
// Pending jobs are ordered by priority (higher first), then submit order.
// With a runner that does not place jobs itself (the local runner), the
// scheduler allocates GPUs exclusively, lowest free indices first, and the
// job sees CUDA_VISIBLE_DEVICES with exactly those indices (empty for none),
// ZENITH_JOB_NAME and ZENITH_MOUNT. Backfill is conservative (EASY): the
// first job that does not fit gets a reservation at the earliest time the
// running jobs' time limits guarantee enough GPUs; a later job starts ahead
// of it only if it fits now and either its own time limit ends it before
// that time or it uses only GPUs the reserved job will not need. A job
// without a time limit therefore never jumps a waiting bigger job unless
// spare GPUs allow it. CPUs and memory are recorded and passed to Slurm;
// the local runner does not enforce them. A runner that allocates GPUs
// itself (Slurm) gets every pending job at once and reports the GPUs.
//
// # Running, stopping, retrying
//
// The local runner starts each attempt in its own process group under a
// small /bin/sh wrapper that records the exit status in a file, and pipes
// stdout and stderr into a separate copier process that appends to
// StateDir/logs/<name>.<seq>.log. The copier keeps reading past the cap (LogCap,
// all attempts together) and drops the excess with a note in the log, so a
// chatty job never blocks; being its own process, it keeps logging while the
// daemon is down. A RunRef holds pid, process start time (/proc/<pid>/stat
// field 22) and the exit-status file, so a restarted daemon tells its own
// process from a reused pid. Cancel and time limits send SIGTERM to the
// process group and SIGKILL after Grace; the job ends CANCELLED or TIMEOUT
// whatever its exit status. A FAILED attempt runs again while retries
// remain (Attempts counts them); CANCELLED, TIMEOUT and LOST are final.
//
// A runner that queues attempts itself (Slurm) reports them PENDING, with
// its reason, until they run. When it takes a running attempt back into
// its queue (a Slurm requeue after a node failure or a preemption) the
// job is PENDING again ("requeued by slurm: …"), without start time or
// GPUs; when it runs again its start time, from which the time limit
// counts, is the new start. A cancel the runner refuses (scancel during a
// controller outage) is asked again every heartbeat, queued or running.
//
// Remove forgets a job that has ended: its record, its log and the exit
// files beside it go, and its name may be submitted again (a new Seq); a
// pending or running job is ErrActive.
//
// A start that fails with ErrTemporary keeps the job PENDING ("waiting to
// start: …") and is retried after a pause that doubles up to a minute.
// Each attempt carries a RunRequest.StartKey, stored before its first
// Start: a retry of an uncertain start (Slurm's sbatch timing out after
// the controller took the job; a daemon that died during Start) passes
// the same key with Resubmit set, and the Slurm runner adopts the job it
// finds with that key rather than submit a second one. A job cancelled
// while such a start is uncertain stays PENDING until the runner (a
// Finder) has looked for the launch and stopped what it found.
//
// # Persistence, restart and shutdown
//
// Every job (spec, state, exit code, reason, times, attempts, GPUs, RunRef)
// is in StateDir/jobs.db (bbolt), written before Submit returns and at
// every state change. New resumes: a job that was RUNNING is polled — alive
// (same pid and start time), it is adopted and watched, and its exit status
// is read from the wrapper's file when it ends; gone without a recorded
// status, it is LOST with the reason (the zombie detection). PENDING jobs
// queue again — except one whose attempt the last daemon launched but died
// before recording (it has a StartKey and no RunRef): where the scheduler
// places jobs on its own GPUs (the local runner, a Finder that looks for
// the attempt's wrapper process, or the exit file it left), that attempt
// is adopted on the GPUs stored with the StartKey, not run a second time;
// its start time is the restart's. A heartbeat (PollInterval) polls every running attempt, so a
// process that vanishes later is marked LOST too, never RUNNING forever.
//
// Close (unmount) stops running jobs — SIGTERM, SIGKILL after Grace — and
// records them CANCELLED with reason "daemon shutdown"; pending jobs stay
// PENDING for the next start. Close cuts short the loop's pass of polls
// (one runner command per job, each up to Slurm's command timeout while
// the controller is down) and starts nothing more; a Start in flight is
// let finish, since cutting it short could leave a launch untracked. With Config.LeaveRunning (e.g. for Slurm jobs,
// which belong to the cluster) Close leaves them running for the next
// daemon to adopt. A daemon that dies without Close (kill -9, crash) leaves
// its jobs running; the next one adopts them as above.
//
// # Locking
//
// Scheduler.mu guards the job table, GPU holders and the rejection list;
// store writes happen under it so the database sees changes in order. It is
// never held across a Runner call (Start, Poll and Cancel may exec sbatch or
// squeue). One goroutine (loop) dispatches and polls, so two dispatches
// never race for the same GPUs; a job being started is marked so that a
// concurrent Cancel defers to the dispatcher.
package scheduler
