#!/usr/bin/env bash
# Installs the real framework clients that the test suite runs against a
# mount (clients/): Debian's python3-numpy and python3-torch for
# /usr/bin/python3, and the npm packages of clients/node (apache-arrow,
# nodejs-polars, pinned in package.json and package-lock.json).
# Idempotent; quiet when everything is present. scripts/setup.sh calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# Debian's python3, not one that PATH may find first (pyenv, venvs).
/usr/bin/python3 -c 'import numpy' 2>/dev/null || need_apt+=(python3-numpy)
/usr/bin/python3 -c 'import torch' 2>/dev/null || need_apt+=(python3-torch)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "setup-clients: need root to install: ${need_apt[*]}" >&2
		exit 1
	fi
	echo "setup-clients: installing ${need_apt[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
	echo "setup-clients: Node.js $(node --version) is too old; nodejs-polars 0.25.2 and apache-arrow 21 need Node.js 20 or later" >&2
	exit 1
fi
# npm ci would wipe and reinstall each time; install only when the lock
# file changed since the last install (a copy is kept in node_modules).
stamp=clients/node/node_modules/.zenith-installed-lock
if ! cmp -s clients/node/package-lock.json "$stamp" 2>/dev/null ||
	[ ! -f clients/node/node_modules/nodejs-polars-linux-x64-gnu/package.json ]; then
	echo "setup-clients: npm install in clients/node" >&2
	(cd clients/node && npm install --no-audit --no-fund --loglevel=error >/dev/null)
	cp clients/node/package-lock.json "$stamp"
fi
