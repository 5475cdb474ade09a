#!/usr/bin/env bash
# The test command: installs what the tests need, then gofmt, go vet and
# go test -race over every package (real FUSE mounts, a real S3 server, real
# processes, a real single-node Slurm).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=${GOFLAGS:-}
scripts/setup.sh
if [ "${ZENITH_SLURM:-1}" = 1 ] && [ -x scripts/slurm-up.sh ]; then
	scripts/slurm-up.sh
fi
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed on: $unformatted" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 20m ./... 2>&1 | tee /tmp/zenithfs-test.log
