#!/usr/bin/env bash
# The demo on an embedded default: generates a sample dataset in all four
# formats, mounts it, lists and reads batch files, prints a few rows,
# submits a demo job through the control tree, and unmounts.
set -euo pipefail
cd "$(dirname "$0")/.."
ZENITH_WITH_CLIENTS=0 scripts/setup.sh
scripts/build.sh
Z=$PWD/bin/zenithfs
work=$(mktemp -d /tmp/zenithfs-demo.XXXXXX)
mnt=$work/mnt
mkdir -p "$mnt"
cleanup() {
	mountpoint -q "$mnt" 2>/dev/null && "$Z" umount "$mnt" || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "== generating a sample dataset in $work/data"
"$Z" sample "$work/data" --rows 20000

echo "== mounting at $mnt"
"$Z" mount --state-dir "$work/state" --batch-size 4096 --gpus 2 \
	--dataset parquet="$work/data/parquet" --dataset csv="$work/data/csv" \
	--dataset jsonl="$work/data/jsonl" --dataset arrow="$work/data/arrow" "$mnt"

echo "== ls $mnt"
ls "$mnt"
echo "== ls -l $mnt/parquet"
ls -l "$mnt/parquet"
echo "== head of $mnt/parquet/_manifest.json"
head -12 "$mnt/parquet/_manifest.json"
echo "== reading every batch file of every dataset"
for d in parquet csv jsonl arrow; do
	n=0; bytes=0
	for f in "$mnt/$d"/[0-9]*.arrow; do
		b=$(wc -c <"$f"); bytes=$((bytes + b)); n=$((n + 1))
	done
	echo "$d: $n batch files, $bytes bytes"
done
echo "== a few rows of $mnt/csv/000001.arrow (decoded by an Arrow reader)"
go run ./cmd/arrowcat -n 3 "$mnt/csv/000001.arrow"
go run ./cmd/arrowcat -n 2 "$mnt/parquet/000000.arrow"

if [ -e "$mnt/.zenith/jobs/submit" ]; then
	echo "== submitting a demo job through the control tree"
	echo '{"name":"demo","command":["sh","-c","echo training on $CUDA_VISIBLE_DEVICES; ls $ZENITH_MOUNT/parquet | wc -l"],"gpus":1}' >"$mnt/.zenith/jobs/submit"
	for _ in $(seq 100); do
		s=$(cat "$mnt/.zenith/jobs/demo/status")
		case $s in COMPLETED|FAILED|CANCELLED|TIMEOUT|LOST) break ;; esac
		sleep 0.1
	done
	echo "status: $(cat "$mnt/.zenith/jobs/demo/status")"
	echo "log:"; cat "$mnt/.zenith/jobs/demo/log"
	cat "$mnt/.zenith/gpus"
fi
echo "== .zenith/stats"
head -30 "$mnt/.zenith/stats"
echo "== unmounting"
"$Z" umount "$mnt"
echo "demo OK"
