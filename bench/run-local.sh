#!/usr/bin/env bash
# Reproduces bench/results/local-DATE.{md,json,png}, the local read-path
# benchmark of zenithfs (see bench/README.md): builds zenithfs and the
# benchmark into bench/out, generates the Parquet data into bench/data (both
# git-ignored; the data is reused while its parameters match), mounts it,
# measures every arm, unmounts, writes the results.
#
#   bench/run-local.sh                       # the default run (~2 minutes)
#   bench/run-local.sh -reps 5 -rows 4000000 # any flag of `bench/local run -h`
#   bench/run-local.sh -profile bench/out/profiles   # plus daemon CPU profiles
#
# Needs root for the FUSE mounts (DirectMount) and to drop the page cache
# for the cold io_uring/pread epochs; without root the cold epochs are
# reported as not cold.
set -euo pipefail
cd "$(dirname "$0")/.."

out=bench/out
mkdir -p "$out"
echo "building zenithfs and the benchmark" >&2
go build -o "$out/zenithfs" ./cmd/zenithfs
go build -o "$out/bench-local" ./bench/local

work=$(mktemp -d /tmp/zenithfs-bench.XXXXXX)
shm=$(mktemp -d /dev/shm/zenithfs-bench.XXXXXX)
cleanup() {
	# Unmount whatever an interrupted run left mounted, then remove the work dir.
	for m in "$work"/mnt-*; do
		if [ -d "$m" ] && grep -qs " $m " /proc/self/mountinfo; then
			"$out/zenithfs" umount "$m" || true
		fi
	done
	rm -rf "$work" "$shm"
}
trap cleanup EXIT

BENCH_COMMAND="bench/run-local.sh${*:+ $*}" "$out/bench-local" run -bin "$out/zenithfs" -work "$work" -shm "$shm" -data bench/data -out bench/results "$@"
