#!/usr/bin/env bash
# The demo against a local S3 server: installs what it needs (FUSE tools,
# versitygw), starts versitygw on a free loopback port over a temporary
# directory, uploads the generated sample dataset (Parquet) into a bucket,
# mounts it from s3:// beside the same files mounted from local disk,
# reads every batch file (and checks both mounts serve identical bytes),
# shows a few rows and the S3 counters of .zenith/stats, unmounts and stops
# the server. Nothing leaves 127.0.0.1.
#
#   scripts/demo-s3.sh            # S3_PORT=PORT to choose the port
set -euo pipefail
cd "$(dirname "$0")/.."
ZENITH_WITH_CLIENTS=0 scripts/setup.sh
scripts/build.sh
Z=$PWD/bin/zenithfs
work=$(mktemp -d /tmp/zenithfs-demo-s3.XXXXXX)
mnt=$work/mnt
mkdir -p "$mnt"
export S3_RUN_DIR=$work/s3run # pid and log files of this demo's server

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=${S3_PORT:-}
if [ -z "$port" ]; then
	for p in $(seq 17070 17170); do
		if port_free "$p"; then port=$p; break; fi
	done
	[ -n "$port" ] || { echo "demo-s3: no free port in 17070-17170" >&2; exit 1; }
fi

cleanup() {
	mountpoint -q "$mnt" 2>/dev/null && "$Z" umount "$mnt" || true
	scripts/s3-server.sh stop "$port" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "== starting versitygw on 127.0.0.1:$port"
scripts/s3-server.sh start "$work/s3" "$port"
# Credentials, region and endpoint through the standard AWS variables.
eval "$(scripts/s3-server.sh env "$port")"
endpoint=$AWS_ENDPOINT_URL_S3

echo "== generating a sample dataset in $work/data"
"$Z" sample "$work/data" --rows 20000 >/dev/null
echo "== uploading $work/data/parquet to s3://demo/train/"
scripts/s3-server.sh load "$work/data/parquet" demo train/ "$port"

echo "== mounting s3://demo/train (and the same files from disk) at $mnt"
"$Z" mount --state-dir "$work/state" --batch-size 4096 --gpus 0 \
	--s3-endpoint "$endpoint" --dataset train=s3://demo/train \
	--dataset local="$work/data/parquet" "$mnt"

echo "== ls -l $mnt/train"
ls -l "$mnt/train"
echo "== sources in $mnt/train/_manifest.json"
grep -E '"(key|etag|rows)"' "$mnt/train/_manifest.json"
echo "== reading every batch file, from S3 and from disk"
n=0; bytes=0
for f in "$mnt/train"/[0-9]*.arrow; do
	b=$(wc -c <"$f"); bytes=$((bytes + b)); n=$((n + 1))
	cmp -s "$f" "$mnt/local/$(basename "$f")" || { echo "demo-s3: $(basename "$f") differs between S3 and disk" >&2; exit 1; }
done
echo "train (s3): $n batch files, $bytes bytes, identical to the local mount"
echo "== a few rows of $mnt/train/000001.arrow (decoded by an Arrow reader)"
go run ./cmd/arrowcat -n 3 "$mnt/train/000001.arrow"
echo "== S3 counters in .zenith/stats"
sed -n '/"s3"/,/]/p' "$mnt/.zenith/stats"
echo "== unmounting"
"$Z" umount "$mnt"
echo "== stopping versitygw"
scripts/s3-server.sh stop "$port"
echo "demo-s3 OK"
