// Package slurm is the scheduler.Runner that runs jobs on a Slurm cluster
// (`zenithfs mount --jobs slurm`). The control tree, the queue and the job
// store stay the same; only where an attempt runs changes.
//
// # How a job becomes a Slurm job
//
// Start turns a scheduler.RunRequest into `sbatch --parsable` options and a
// batch script fed on stdin:
//
//	--job-name=NAME  --output=LOG --error=LOG --open-mode=append
//	--comment="zenithfs job NAME attempt N key STARTKEY"
//	--gres=gpu:N  --cpus-per-task=C  --mem=MiB M  --time=D-HH:MM:SS
//	--requeue (retries > 0) | --no-requeue   --nodes=N  --ntasks-per-node=T
//	--chdir=WORKDIR (or Config.Workdir)  --partition=P  Config.ExtraArgs…
//
// Options travel as argv (no shell parses them); the script exports the
// spec's env, ZENITH_JOB_NAME, ZENITH_JOB_ATTEMPT and ZENITH_MOUNT with
// single-quoted values and execs the command with every argument quoted, so
// nothing is shell-interpreted unless the spec says "shell": true. The job
// inherits the submitting daemon's environment (sbatch's --export=ALL).
// Both streams go to RunRequest.LogPath, the file the control tree serves as
// the job's log; on a real cluster that path must be on a file system the
// compute nodes share with the submitting machine. With Config.LogCap (the
// daemon sets the scheduler's 64 MiB) the log stays within the cap over
// all attempts, as the local runner's does: the script runs the command
// with its output into a FIFO read by the scheduler's log copier, which
// appends what the cap leaves of the log (its size when the attempt
// starts) and drops the rest with a note; the copier ignores the SIGTERM
// of a cancel so the job's last words still arrive, and the script ends
// with the command's exit status or signal. Slurm, not the scheduler,
// places jobs on GPUs (AllocatesGPUs is true): with gres.conf File= entries
// it sets CUDA_VISIBLE_DEVICES and SLURM_JOB_GPUS for the job, and Poll
// reports the allocated indices from `scontrol show job -d`.
//
// The RunRef is the Slurm job id ("ID", or "ID;CLUSTER" where sbatch names a
// cluster). The Runner keeps no other state (but a clock per job only sacct
// still knows, below), so after a daemon restart a new Runner polls and
// cancels the jobs the job store remembers.
//
// An unreachable controller and an sbatch that times out (30 s, or "Socket
// timed out on send/recv operation") fail Start with
// scheduler.ErrTemporary: the job stays PENDING and is submitted again
// later. Since the controller may have accepted the job all the same, that
// later Start (RunRequest.Resubmit) first looks for a job of the user with
// the attempt's comment (`squeue --states=all --name=NAME`, matching the
// StartKey) and adopts it; when squeue cannot answer either, it submits
// nothing and fails with ErrTemporary again. FindStarted is the same
// lookup, which the scheduler uses for a job cancelled in between. A job
// that was accepted, ran and was purged from the controller before the
// lookup is not found (sacct keeps no comments by default). A refusal for
// a submit limit (AssocMaxSubmitJobLimit, QOSMaxSubmitJobPerUserLimit…:
// "Job violates accounting/QOS policy (job submit limit…)") is temporary
// too; one that names another limit (a QOS with DenyOnLimit) is not.
//
// # States
//
// Poll reads `scontrol show job -d -o ID` and maps JobState:
//
//	PENDING, REQUEUED, REQUEUE_HOLD, SPECIAL_EXIT, …    → PENDING (again, after a requeue)
//	CONFIGURING, RUNNING, COMPLETING, SUSPENDED, …      → RUNNING
//	COMPLETED                                           → COMPLETED
//	FAILED, OUT_OF_MEMORY, PREEMPTED                    → FAILED
//	CANCELLED                                           → CANCELLED
//	TIMEOUT, DEADLINE                                   → TIMEOUT
//	NODE_FAIL, BOOT_FAIL, REVOKED                       → LOST
//
// Slurm's Reason (Resources, Priority, NonZeroExitCode, …) becomes
// RunStatus.Reason; ExitCode=N:S gives N, or -1 when S (a signal) is set.
// A job the controller has forgotten (after MinJobAge) is looked up with
// sacct, then in a jobcomp/filetxt log (Config.JobCompLog), and is LOST with
// a reason when nobody knows it. When sacct fails (slurmdbd down, a timeout)
// and the jobcomp log does not know the job either, its end is unknown, not
// LOST: Poll wraps ErrUnavailable and is asked again; only "accounting
// storage is disabled" or a missing sacct counts as sacct knowing nothing. A
// job sacct still shows PENDING or RUNNING that the controller does not know
// (its end never reached the database) is reported as sacct says for
// Config.ForgottenGrace (10 minutes), then LOST with a reason. An unknown
// future state is an error wrapping ErrUnknownState, never a guess; an
// unreachable controller wraps ErrUnavailable, so the scheduler keeps the
// job and polls again.
//
// Cancel runs a plain `scancel`: Slurm sends SIGTERM to every step, waits
// KillWait (slurm.conf), then SIGKILL, and the job ends CANCELLED. Slurm has
// no per-job grace period, so Cancel's grace argument is not used; a
// `scancel --signal=TERM` first would make the job end FAILED rather than
// CANCELLED. Every command runs under Config.CommandTimeout.
//
// # Multi-node jobs and data
//
// A request with Nodes > 1 or TasksPerNode > 1 runs its command once per
// task through `srun --kill-on-bad-exit=1`; each task sees SLURM_PROCID
// (its rank), SLURM_NTASKS (the world size), SLURM_NODEID and
// SLURM_LOCALID. zenithfs does not move data between nodes: every task
// mounts the same S3 dataset itself and reads its own rank's view, which
// holds an equal, disjoint share of the batches, byte-identical on every
// node. "gpus" and "memory" are per node (--gres, --mem), "cpus" per task
// (--cpus-per-task). A spec for two nodes of four GPUs and four tasks each:
//
//	{"name": "ddp", "nodes": 2, "ntasks_per_node": 4, "gpus": 4, "cpus": 8,
//	 "time_limit": "12h", "env": {"S3_ENDPOINT": "https://s3.example.com"},
//	 "command": ["/shared/ddp-task.sh"]}
//
// with /shared/ddp-task.sh, run by every task:
//
//	#!/bin/sh
//	set -eu
//	mnt=/tmp/zenith-$SLURM_JOB_ID-$SLURM_PROCID
//	mkdir -p "$mnt"
//	zenithfs mount --dataset train=s3://bucket/train --s3-endpoint "$S3_ENDPOINT" \
//	    --state-dir "$mnt.state" --jobs local --gpus 0 "$mnt"
//	trap 'zenithfs umount "$mnt"' EXIT
//	view="$mnt/train/views/rank=$SLURM_PROCID,world=$SLURM_NTASKS"
//	export LOCAL_RANK=$SLURM_LOCALID RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS
//	python3 train.py --data "$view"
//
// The view path is the same on every node and every remount, so a requeued
// job resumes by reopening file k of its view. One mount per node (task with
// SLURM_LOCALID=0 mounts, the others wait for it) saves memory when there are
// many tasks per node; the views are the same either way.
package slurm
