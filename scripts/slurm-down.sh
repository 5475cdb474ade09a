#!/usr/bin/env bash
# slurm-down.sh — stop the single-node Slurm started by scripts/slurm-up.sh:
# slurmd, slurmctld, then munged. Idempotent: stopping what is not running is
# not an error.
#
#   scripts/slurm-down.sh               stop slurmd, slurmctld and munged
#   scripts/slurm-down.sh --keep-munge  leave munged running (used by slurm-up.sh on a config change)
#   scripts/slurm-down.sh --purge       also forget Slurm's saved state (jobs, node states)
set -euo pipefail

keep_munge=0
purge=0
for arg in "$@"; do
	case $arg in
	--keep-munge) keep_munge=1 ;;
	--purge) purge=1 ;;
	*)
		echo "usage: slurm-down.sh [--keep-munge] [--purge]" >&2
		exit 2
		;;
	esac
done

# stop NAME PIDFILE: SIGTERM, wait up to 15 s, then SIGKILL.
stop() {
	local name=$1 pidfile=$2 pid
	[[ -s $pidfile ]] || return 0
	pid=$(cat "$pidfile")
	if ! kill -0 "$pid" 2>/dev/null; then
		rm -f "$pidfile"
		return 0
	fi
	echo "slurm-down: stopping $name (pid $pid)" >&2
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "slurm-down: $name did not stop; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	rm -f "$pidfile"
}

stop slurmd /run/slurm/slurmd.pid
stop slurmctld /run/slurm/slurmctld.pid
if ((!keep_munge)); then
	stop munged /run/munge/munged.pid
fi
if ((purge)); then
	rm -rf /var/spool/slurmctld/* /var/spool/slurmd/*
fi
