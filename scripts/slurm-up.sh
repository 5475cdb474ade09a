#!/usr/bin/env bash
# slurm-up.sh — bring up a single-node Slurm "cluster" on this machine, for
# zenithfs' `--jobs slurm` mode and its tests.
#
# Works on a fresh Debian 12 machine as root without systemd, and is
# idempotent: running it again with Slurm up and the config unchanged does
# nothing; a changed config restarts the daemons.
#
# What it does:
#   1. apt-get install slurm-wlm munge (only when missing).
#   2. Creates a munge key when missing and starts munged as the munge user.
#   3. Writes /etc/slurm/slurm.conf and gres.conf for ONE node named after
#      `hostname -s`, on loopback only (NodeAddr=127.0.0.1), with 4 placeholder
#      GPUs (/dev/zenith-gpu0..3, character devices like /dev/null) so that
#      Slurm's gres/gpu plugin sets CUDA_VISIBLE_DEVICES and SLURM_JOB_GPUS.
#   4. Starts slurmctld and slurmd and waits until the node is idle.
#
# Tunables (environment):
#   ZENITH_SLURM_GPUS     placeholder GPUs on the node (default 4)
#   ZENITH_SLURM_CPUS     CPUs declared for the node (default max(8, nproc));
#                         more than the real cores is allowed through
#                         SlurmdParameters=config_overrides, so that GPUs, not
#                         the 2 cores of a small CI machine, are what jobs wait on.
#   ZENITH_SLURM_TIMEOUT  seconds to wait for the node to become idle (default 60)
#
# Logs: /var/log/slurm/slurmctld.log, /var/log/slurm/slurmd.log,
#       /var/log/munge/munged.log. Stop everything with scripts/slurm-down.sh.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
	echo "slurm-up.sh: must run as root" >&2
	exit 1
fi

GPUS=${ZENITH_SLURM_GPUS:-4}
NPROC=$(nproc)
CPUS=${ZENITH_SLURM_CPUS:-$((NPROC > 8 ? NPROC : 8))}
TIMEOUT=${ZENITH_SLURM_TIMEOUT:-60}
NODE=$(hostname -s)
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
PARTITION=zenith

log() { echo "slurm-up: $*" >&2; }
die() {
	echo "slurm-up: ERROR: $*" >&2
	for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
		if [[ -f $f ]]; then
			echo "---- tail $f" >&2
			tail -n 25 "$f" >&2
		fi
	done
	exit 1
}

# pid_alive FILE: the pid in FILE names a running process.
pid_alive() {
	[[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# 1. Packages.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
	! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
	log "installing slurm-wlm and munge"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# 2. Munge.
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
	log "creating munge key"
	if command -v mungekey >/dev/null; then
		mungekey --create --keyfile=/etc/munge/munge.key --force
	else
		dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
	fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! pid_alive /run/munge/munged.pid; then
	log "starting munged"
	rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
	runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid ||
		die "munged did not start"
fi
for _ in $(seq 50); do
	munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
	sleep 0.1
done
munge -n | unmunge >/dev/null || die "munge does not work (munge -n | unmunge failed)"

# 3. Placeholder GPUs and config.
for ((i = 0; i < GPUS; i++)); do
	[[ -e /dev/zenith-gpu$i ]] || mknod -m 0666 "/dev/zenith-gpu$i" c 1 3
done

MEM=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
MEM=$((MEM * 3 / 4)) # leave room for the OS; jobs without --mem get DefMemPerCPU
install -d -m 0755 "$CONF_DIR"
install -d -o slurm -g slurm -m 0755 "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd /run/slurm

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/slurm.conf" <<EOF
# Written by zenithfs scripts/slurm-up.sh: a single node on loopback.
ClusterName=zenith
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Declared CPUs may exceed the real cores (small CI machines).
SlurmdParameters=config_overrides
# Scheduling: fast enough for tests.
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
GresTypes=gpu
# Time limits: no grace, a short kill wait, finished jobs visible for an hour
# through scontrol (there is no accounting database, so no sacct).
OverTimeLimit=0
KillWait=2
MinJobAge=3600
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM Gres=gpu:$GPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
: >"$tmp/gres.conf"
echo "# Written by zenithfs scripts/slurm-up.sh: placeholder GPU devices." >>"$tmp/gres.conf"
for ((i = 0; i < GPUS; i++)); do
	echo "NodeName=$NODE Name=gpu File=/dev/zenith-gpu$i" >>"$tmp/gres.conf"
done

changed=0
for f in slurm.conf gres.conf; do
	if ! cmp -s "$tmp/$f" "$CONF_DIR/$f"; then
		install -m 0644 "$tmp/$f" "$CONF_DIR/$f"
		changed=1
	fi
done

if ((changed)) && { pid_alive /run/slurm/slurmctld.pid || pid_alive /run/slurm/slurmd.pid; }; then
	log "config changed: restarting slurm"
	"$(dirname "$0")/slurm-down.sh" --keep-munge
fi

# 4. Daemons.
if ! pid_alive /run/slurm/slurmctld.pid; then
	log "starting slurmctld"
	slurmctld || die "slurmctld did not start"
fi
if ! pid_alive /run/slurm/slurmd.pid; then
	log "starting slurmd"
	slurmd || die "slurmd did not start"
fi

# A node drained or down from an earlier run (config change, killed daemon)
# is put back in service once slurmd has registered.
deadline=$((SECONDS + TIMEOUT))
resumed=0
while :; do
	state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1 || true)
	case $state in
	idle | mixed | allocated | completing)
		log "node $NODE is $state (partition $PARTITION, $CPUS CPUs, $GPUS GPUs)"
		exit 0
		;;
	drained* | draining* | down* | drain*)
		if ((!resumed)); then
			log "node $NODE is $state: resuming it"
			scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
			resumed=1
		fi
		;;
	esac
	if ((SECONDS >= deadline)); then
		die "node $NODE not idle after ${TIMEOUT}s (state: '${state:-unreachable}'; scontrol: $(scontrol show node "$NODE" 2>&1 | grep -o 'Reason=.*' || true))"
	fi
	sleep 0.5
done
