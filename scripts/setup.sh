#!/usr/bin/env bash
# Installs what zenithfs, its demo and its tests need on a fresh Debian 12
# machine: fuse3 (fusermount3 for non-root mounts), and the S3 test server.
# Idempotent; quiet when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
if [ "${ZENITH_WITH_CLIENTS:-1}" = 1 ]; then
	/usr/bin/python3 -c 'import numpy, torch' 2>/dev/null || need_apt+=(python3 python3-numpy python3-torch)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "setup: need root to install: ${need_apt[*]}" >&2
		exit 1
	fi
	echo "setup: installing ${need_apt[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Non-root users may pass allow_other only with this line.
if [ "$(id -u)" = 0 ] && [ -f /etc/fuse.conf ] && ! grep -q '^user_allow_other' /etc/fuse.conf; then
	echo user_allow_other >>/etc/fuse.conf
fi
scripts/s3-server.sh install >/dev/null
# Real framework clients for the tests (npm apache-arrow, nodejs-polars).
if [ "${ZENITH_WITH_CLIENTS:-1}" = 1 ] && [ -x scripts/setup-clients.sh ]; then
	scripts/setup-clients.sh
fi
