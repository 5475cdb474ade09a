#!/usr/bin/env bash
# Reproduces bench/results/s3-DATE.md, the S3 read-path benchmark of
# zenithfs (see bench/s3/README.md): installs versitygw if needed, builds
# zenithfs and the benchmark into bench/out, generates the Parquet data into
# bench/data/s3 (both git-ignored; reused while its parameters match),
# starts versitygw on a loopback port, uploads, mounts, measures, unmounts,
# stops the server, writes the results.
#
#   bench/s3/run.sh                          # the default run
#   bench/s3/run.sh -reps 7 -kinds table     # any flag of: go run ./bench/s3 -h
#   bench/s3/run.sh -arms zenithfs,zenithfs-noprefetch,baseline,baseline-parallel
#
# Needs root for the FUSE mounts (DirectMount) and /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/../.."

ZENITH_WITH_CLIENTS=0 scripts/setup.sh
out=bench/out
mkdir -p "$out"
echo "building zenithfs and the benchmark" >&2
go build -o "$out/zenithfs" ./cmd/zenithfs
go build -o "$out/bench-s3" ./bench/s3

work=$(mktemp -d /tmp/zenithfs-bench-s3.XXXXXX)
cleanup() {
	# Unmount whatever an interrupted run left mounted, then remove the work dir.
	for m in "$work"/mnt-*; do
		if [ -d "$m" ] && grep -qs " $m " /proc/self/mountinfo; then
			"$out/zenithfs" umount "$m" || true
		fi
	done
	rm -rf "$work"
}
trap cleanup EXIT
"$out/bench-s3" -bin "$out/zenithfs" -work "$work" "$@"
