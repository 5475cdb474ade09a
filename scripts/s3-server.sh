#!/usr/bin/env bash
# The S3 test server: versitygw (Apache-2.0) with its posix backend, on a
# loopback port only.
#
#   scripts/s3-server.sh install            install versitygw v1.8.0 (go install) unless present
#   scripts/s3-server.sh start DIR [PORT]   serve DIR (one directory per bucket) on 127.0.0.1:PORT
#   scripts/s3-server.sh stop [PORT]        stop the server started on PORT
#   scripts/s3-server.sh env [PORT]         print the AWS_* exports that reach it:
#                                           eval "$(scripts/s3-server.sh env)"
#   scripts/s3-server.sh load SRC BUCKET [PREFIX] [PORT]
#                                           upload a file or directory tree (bucket created if missing)
#   scripts/s3-server.sh path               print the binary's path
#
# PORT defaults to 7070 ($S3_PORT). Credentials: $S3_ACCESS_KEY / $S3_SECRET_KEY
# (default zenith / zenithsecret). The pid and log files live in
# ${S3_RUN_DIR:-/tmp/zenithfs-s3}.
set -euo pipefail

VERSION=v1.8.0
MODULE=github.com/versity/versitygw
PORT_DEFAULT=${S3_PORT:-7070}
ACCESS=${S3_ACCESS_KEY:-zenith}
SECRET=${S3_SECRET_KEY:-zenithsecret}
REGION=${S3_REGION:-us-east-1}
RUN_DIR=${S3_RUN_DIR:-/tmp/zenithfs-s3}

die() { echo "s3-server: $*" >&2; exit 1; }

gobin() {
	local d
	d=$(go env GOBIN 2>/dev/null || true)
	[ -n "$d" ] || d="$(go env GOPATH 2>/dev/null | cut -d: -f1)/bin"
	echo "$d"
}

# find_bin prints the versitygw binary's path, or nothing.
find_bin() {
	if [ -n "${VERSITYGW:-}" ] && [ -x "$VERSITYGW" ]; then echo "$VERSITYGW"; return; fi
	if command -v versitygw >/dev/null 2>&1; then command -v versitygw; return; fi
	if command -v go >/dev/null 2>&1 && [ -x "$(gobin)/versitygw" ]; then echo "$(gobin)/versitygw"; return; fi
	if [ -x "$HOME/go/bin/versitygw" ]; then echo "$HOME/go/bin/versitygw"; fi
}

# installed_version prints the module version a Go-built binary records.
installed_version() {
	go version -m "$1" 2>/dev/null | awk -v m="$MODULE" '$1 == "mod" && $2 == m { print $3 }'
}

cmd_install() {
	local bin
	bin=$(find_bin)
	if [ -n "$bin" ]; then
		local v
		v=$(installed_version "$bin" || true)
		if [ -z "$v" ] || [ "$v" = "$VERSION" ]; then
			echo "versitygw ${v:-(version unknown)} at $bin"
			return
		fi
		echo "versitygw $v at $bin; installing $VERSION"
	fi
	command -v go >/dev/null 2>&1 || die "go is not installed: it is needed to install versitygw"
	echo "installing versitygw $VERSION (go install $MODULE/cmd/versitygw@$VERSION)..."
	GOFLAGS=-buildvcs=false go install "$MODULE/cmd/versitygw@$VERSION"
	[ -x "$(gobin)/versitygw" ] || die "go install succeeded but $(gobin)/versitygw is missing"
	echo "versitygw $VERSION at $(gobin)/versitygw"
}

pidfile() { echo "$RUN_DIR/versitygw-$1.pid"; }
logfile() { echo "$RUN_DIR/versitygw-$1.log"; }

running() { # running PORT: the pid file names a live versitygw
	local pf pid
	pf=$(pidfile "$1")
	[ -f "$pf" ] || return 1
	pid=$(cat "$pf")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -qa versitygw "/proc/$pid/cmdline" 2>/dev/null
}

check_port() {
	case "$1" in
	'' | *[!0-9]*) die "bad port '$1'" ;;
	esac
	[ "$1" -ge 1 ] && [ "$1" -le 65535 ] || die "bad port '$1'"
}

cmd_start() {
	local dir=${1:-} port=${2:-$PORT_DEFAULT}
	[ -n "$dir" ] || die "usage: $0 start DIR [PORT]"
	check_port "$port"
	if running "$port"; then
		echo "versitygw already running on 127.0.0.1:$port (pid $(cat "$(pidfile "$port")"))"
		return
	fi
	local bin
	bin=$(find_bin)
	[ -n "$bin" ] || die "versitygw is not installed: run $0 install"
	mkdir -p "$dir" "$RUN_DIR"
	dir=$(cd "$dir" && pwd)
	local log
	log=$(logfile "$port")
	: >"$log"
	setsid "$bin" --access "$ACCESS" --secret "$SECRET" --region "$REGION" \
		--port "127.0.0.1:$port" --keep-alive --quiet posix "$dir" >>"$log" 2>&1 </dev/null &
	local pid=$!
	echo "$pid" >"$(pidfile "$port")"
	local i
	for i in $(seq 1 200); do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$(pidfile "$port")"
			die "versitygw exited at start; its log ($log):
$(tail -n 20 "$log")"
		fi
		# Any HTTP answer (403 without credentials) means it serves.
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			if command -v curl >/dev/null 2>&1; then
				curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" && break
			else
				break
			fi
		fi
		sleep 0.1
	done
	[ "$i" -lt 200 ] || { cmd_stop "$port"; die "versitygw did not answer on 127.0.0.1:$port within 20s"; }
	echo "versitygw serving $dir on http://127.0.0.1:$port (pid $pid, log $log)"
}

cmd_stop() {
	local port=${1:-$PORT_DEFAULT}
	check_port "$port"
	local pf
	pf=$(pidfile "$port")
	if ! running "$port"; then
		rm -f "$pf"
		echo "versitygw not running on 127.0.0.1:$port"
		return
	fi
	local pid i
	pid=$(cat "$pf")
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pf"
	echo "versitygw on 127.0.0.1:$port stopped"
}

cmd_env() {
	local port=${1:-$PORT_DEFAULT}
	check_port "$port"
	cat <<EOF
export AWS_ACCESS_KEY_ID=$ACCESS
export AWS_SECRET_ACCESS_KEY=$SECRET
export AWS_REGION=$REGION
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$port
export AWS_EC2_METADATA_DISABLED=true
EOF
}

cmd_load() {
	local src=${1:-} bucket=${2:-} prefix=${3:-} port=${4:-$PORT_DEFAULT}
	[ -n "$src" ] && [ -n "$bucket" ] || die "usage: $0 load SRC BUCKET [PREFIX] [PORT]"
	check_port "$port"
	[ -e "$src" ] || die "$src does not exist"
	src=$(realpath "$src")
	local root
	root=$(cd "$(dirname "$0")/.." && pwd)
	eval "$(cmd_env "$port")"
	(cd "$root" && go run ./internal/s3test/s3load -bucket "$bucket" -prefix "$prefix" -endpoint "$AWS_ENDPOINT_URL_S3" "$src")
}

case "${1:-}" in
install) cmd_install ;;
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
env) shift; cmd_env "$@" ;;
load) shift; cmd_load "$@" ;;
path) b=$(find_bin); [ -n "$b" ] || die "versitygw is not installed: run $0 install"; echo "$b" ;;
*) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
