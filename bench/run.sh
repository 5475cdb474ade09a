#!/usr/bin/env bash
# zenithfs against its peers (issue 8), start to finish on a fresh machine:
# installs s3fs, rclone (apt) and versitygw (scripts/s3-server.sh install),
# builds zenithfs and the benchmark into bench/out/, generates the Parquet
# data into bench/data/peers/ (both git-ignored; the data is reused while
# its parameters match), starts versitygw and the shaping proxy on loopback
# ports, runs every arm, and writes bench/results/peers-DATE.{md,json,png}
# and peers-DATE-ttfb.png. Daemon CPU profiles of extra zenithfs epochs go
# to bench/out/peers-profiles/. See bench/peers/README.md.
#
#   bench/run.sh                         # default: ~330 MB of Parquet, 3 reps (~25 min on 2 cores)
#   bench/run.sh -full                   # the issue's size: ~1.25 GB
#   bench/run.sh -reps 5 -datasets table -arms zenithfs,sdk -nets remote
#   bench/run.sh -latency 50ms -bandwidth 40e6   # any flag of: bench/out/bench-peers run -h
#
# Needs root (FUSE mounts, drop_caches) and /dev/fuse. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v s3fs >/dev/null 2>&1 || need_apt+=(s3fs)
command -v rclone >/dev/null 2>&1 || need_apt+=(rclone)
command -v fusermount >/dev/null 2>&1 || need_apt+=(fuse3)
if [ ${#need_apt[@]} -gt 0 ]; then
	echo "installing ${need_apt[*]} (apt)" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y "${need_apt[@]}" || { apt-get update && apt-get install -y "${need_apt[@]}"; }
fi
scripts/s3-server.sh install >&2

out=bench/out
mkdir -p "$out"
echo "building zenithfs and the benchmark into $out" >&2
go build -o "$out/zenithfs" ./cmd/zenithfs
go build -o "$out/bench-peers" ./bench/peers

work=$(mktemp -d /tmp/zenithfs-bench-peers.XXXXXX)
cleanup() {
	# Unmount whatever an interrupted run left mounted, then remove the work dir.
	# Twice: a daemon killed mid-mount may finish mounting a moment later.
	for pass in 1 2; do
		for m in "$work"/mnt*; do
			if [ -d "$m" ] && grep -qs " $m " /proc/self/mountinfo; then
				umount "$m" 2>/dev/null || umount -l "$m" || true
			fi
		done
		sleep 1
	done
	rm -rf "$work"
}
trap cleanup EXIT
"$out/bench-peers" run -bin "$out/zenithfs" -work "$work" -profile "$out/peers-profiles" "$@"
