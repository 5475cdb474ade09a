#!/usr/bin/env bash
# Builds bin/zenithfs.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/zenithfs ./cmd/zenithfs
