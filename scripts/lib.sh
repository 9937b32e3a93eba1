# shellcheck shell=bash
# Shared helpers for Stowage's test scripts. Source it, do not run it:
#
#   . "$(dirname "$0")/lib.sh"
#   lib_init            # installs the EXIT/INT/TERM trap (cleanup)
#   build_stowage       # builds bin/stowage (once per test.sh run)
#   start_stowage DIR   # exports STOWAGE_PID STOWAGE_ADDR STOWAGE_URL STOWAGE_LOG
#
# Environment knobs:
#   STOWAGE_TEST_REGISTRY=distribution  start CNCF distribution (/usr/bin/docker-registry)
#                                       instead of bin/stowage (to validate the scripts)
#   STOWAGE_KEEP_TMP=1                  keep temporary directories (paths are printed)
#   STOWAGE_START_TIMEOUT=30            seconds to wait for GET /v2/ = 200

# ---------------------------------------------------------------- basics
STOWAGE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export STOWAGE_ROOT

# Go is at /usr/local/go on the project's machines; CI's PATH may not have it.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	PATH="/usr/local/go/bin:$PATH"
	export PATH
fi

# sudo only when not root.
if [ "$(id -u)" -eq 0 ]; then
	SUDO=()
else
	SUDO=(sudo -n)
fi

_LIB_NAME=$(basename "${0:-lib.sh}" .sh)

log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "$_LIB_NAME" "$*" >&2; }
die() {
	log "FAIL: $*"
	exit 1
}

# Fail counter for scripts that want to run every check and report at the end.
LIB_FAILURES=0
LIB_PASSES=0
check_pass() {
	LIB_PASSES=$((LIB_PASSES + 1))
	log "ok: $*"
}
check_fail() {
	LIB_FAILURES=$((LIB_FAILURES + 1))
	log "FAIL: $*"
}
check_eq() { # GOT WANT DESCRIPTION
	if [ "$1" = "$2" ]; then
		check_pass "$3"
	else
		check_fail "$3: got '$1', want '$2'"
	fi
}

# run_bounded SECONDS CMD... : run CMD with a hard time limit (SIGTERM, then
# SIGKILL 10 s later). Returns CMD's status (124 on timeout).
run_bounded() {
	local secs=$1
	shift
	timeout -k 10 "$secs" "$@"
}

# ---------------------------------------------------------------- cleanup
_LIB_PIDS=()       # processes to stop at exit
_LIB_PID_LABELS=() # ... their labels
_LIB_PID_SUDO=()   # ... "sudo" when they run through sudo
_LIB_TMPDIRS=()    # directories removed at exit
_LIB_LOG_LABELS=() # logs whose tail is printed on failure: labels
_LIB_LOG_PATHS=()  # ... and paths
_LIB_HOOKS=()    # commands eval'ed (in reverse order) first at exit
_LIB_CLEANED=0

register_pid() { # PID LABEL [sudo]
	_LIB_PIDS+=("$1")
	_LIB_PID_LABELS+=("${2:-process}")
	_LIB_PID_SUDO+=("${3:-}")
}
register_log() { # LABEL PATH
	_LIB_LOG_LABELS+=("$1")
	_LIB_LOG_PATHS+=("$2")
}
register_hook() { # "command string"
	_LIB_HOOKS+=("$1")
}

# make_tmpdir VAR [PREFIX] : creates a temporary directory removed at exit.
make_tmpdir() {
	local _d
	_d=$(mktemp -d "${TMPDIR:-/tmp}/${2:-stowage-test}.XXXXXX") || die "mktemp failed"
	_LIB_TMPDIRS+=("$_d")
	printf -v "$1" '%s' "$_d"
}

# stop_pid PID [sudo] : SIGTERM, wait up to 15 s, then SIGKILL. Returns 0 if gone.
stop_pid() {
	local pid=$1 use_sudo=${2:-} i
	local -a pre=()
	[ -n "$use_sudo" ] && pre=("${SUDO[@]}")
	"${pre[@]}" kill -0 "$pid" 2>/dev/null || return 0
	"${pre[@]}" kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 150; i++)); do
		"${pre[@]}" kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	log "pid $pid did not stop after SIGTERM; sending SIGKILL"
	"${pre[@]}" kill -KILL "$pid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		"${pre[@]}" kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

print_log_tail() { # LABEL PATH [LINES]
	[ -f "$2" ] || return 0
	printf '\n----- last %s lines of %s (%s) -----\n' "${3:-60}" "$1" "$2" >&2
	tail -n "${3:-60}" "$2" >&2
	printf -- '----- end of %s -----\n\n' "$1" >&2
}

cleanup() {
	local rc=$? i d m
	set +e
	[ "$_LIB_CLEANED" = 1 ] && return "$rc"
	_LIB_CLEANED=1
	if [ "$rc" -ne 0 ]; then
		for ((i = 0; i < ${#_LIB_LOG_PATHS[@]}; i++)); do
			print_log_tail "${_LIB_LOG_LABELS[$i]}" "${_LIB_LOG_PATHS[$i]}"
		done
	fi
	for ((i = ${#_LIB_HOOKS[@]} - 1; i >= 0; i--)); do
		eval "${_LIB_HOOKS[$i]}"
	done
	for ((i = ${#_LIB_PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${_LIB_PIDS[$i]}" "${_LIB_PID_SUDO[$i]}" ||
			log "could not stop ${_LIB_PID_LABELS[$i]} (pid ${_LIB_PIDS[$i]})"
	done
	for d in "${_LIB_TMPDIRS[@]}"; do
		[ -d "$d" ] || continue
		# Unmount anything a daemon may have left mounted below the directory.
		while read -r m; do
			"${SUDO[@]}" umount -l "$m" 2>/dev/null
		done < <(awk -v p="$d/" 'index($2, p) == 1 { print $2 }' /proc/mounts 2>/dev/null | sort -r)
		if [ "${STOWAGE_KEEP_TMP:-}" = 1 ]; then
			log "keeping $d"
		else
			rm -rf "$d" 2>/dev/null || "${SUDO[@]}" rm -rf "$d" 2>/dev/null
		fi
	done
	return "$rc"
}

lib_init() {
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	# OCI_* settings inherited from the caller would change the conformance suite.
	local v
	for v in $(compgen -e); do
		case $v in OCI_*) unset "$v" ;; esac
	done
}

# ---------------------------------------------------------------- network
# port_in_use PORT : true when something accepts connections on 127.0.0.1:PORT.
port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pick_port : prints a currently free TCP port on 127.0.0.1, below the
# kernel's ephemeral range (ip_local_port_range, 32768 by default), where
# no outgoing connection takes a local port between the pick and the bind:
# a region's port, chosen before its peer's configuration is written, was
# taken that way in a CI run while other tests made many connections.
pick_port() {
	local i p lo=32768
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
	[ "$lo" -gt 21024 ] 2>/dev/null || lo=32768
	for ((i = 0; i < 100; i++)); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % (lo - 20000)))
		if ! port_in_use "$p"; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# http_status URL [curl args...] : prints the HTTP status code (000 on error).
http_status() {
	local url=$1
	shift
	curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url" 2>/dev/null || true
}

# wait_http URL WANT TIMEOUT_SECONDS [PID] : polls until URL answers WANT.
wait_http() {
	local url=$1 want=$2 secs=$3 pid=${4:-} i code=""
	for ((i = 0; i < secs * 5; i++)); do
		code=$(http_status "$url")
		[ "$code" = "$want" ] && return 0
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			log "process $pid exited while waiting for $url"
			return 1
		fi
		sleep 0.2
	done
	log "timed out after ${secs}s waiting for $url = $want (last status: $code)"
	return 1
}

# ---------------------------------------------------------------- stowage
STOWAGE_BIN="$STOWAGE_ROOT/bin/stowage"

# build_stowage : go build -o bin/stowage ./cmd/stowage, once per test.sh run
# (test.sh exports STOWAGE_BUILT=1 after building).
build_stowage() {
	if [ "${STOWAGE_TEST_REGISTRY:-stowage}" = distribution ]; then
		command -v docker-registry >/dev/null 2>&1 ||
			die "STOWAGE_TEST_REGISTRY=distribution needs /usr/bin/docker-registry (apt-get install docker-registry)"
		return 0
	fi
	if [ "${STOWAGE_BUILT:-}" = 1 ] && [ -x "$STOWAGE_BIN" ]; then
		return 0
	fi
	log "building bin/stowage"
	(cd "$STOWAGE_ROOT" && go build -o bin/stowage ./cmd/stowage) || die "go build ./cmd/stowage failed"
	STOWAGE_BUILT=1
	export STOWAGE_BUILT
}

# start_stowage DATA_DIR [SERVE ARGS...] : starts the registry on a free
# 127.0.0.1 port and waits until GET /v2/ answers 200 (with access control
# on, set STOWAGE_READY_STATUS=401). Exports STOWAGE_PID, STOWAGE_ADDR
# (127.0.0.1:PORT), STOWAGE_URL (http://ADDR) and STOWAGE_LOG.
start_stowage() {
	local data=$1 attempt port logf pid cfg
	shift
	local timeout_s=${STOWAGE_START_TIMEOUT:-30}
	mkdir -p "$data" || die "cannot create $data"
	build_stowage
	for ((attempt = 1; attempt <= 3; attempt++)); do
		port=$(pick_port)
		[ -n "$port" ] || die "no free port found"
		logf="$data.server-$port.log"
		if [ "${STOWAGE_TEST_REGISTRY:-stowage}" = distribution ]; then
			cfg="$data.config-$port.yml"
			cat >"$cfg" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port
EOF
			docker-registry serve "$cfg" >"$logf" 2>&1 &
			pid=$!
			log "started distribution (docker-registry) pid $pid on 127.0.0.1:$port, data $data"
		else
			"$STOWAGE_BIN" serve --addr "127.0.0.1:$port" --data-dir "$data" "$@" >"$logf" 2>&1 &
			pid=$!
			log "started bin/stowage pid $pid on 127.0.0.1:$port, data $data"
		fi
		register_pid "$pid" "registry on 127.0.0.1:$port"
		register_log "registry log 127.0.0.1:$port" "$logf"
		if wait_http "http://127.0.0.1:$port/v2/" "${STOWAGE_READY_STATUS:-200}" "$timeout_s" "$pid"; then
			STOWAGE_PID=$pid
			STOWAGE_ADDR="127.0.0.1:$port"
			STOWAGE_URL="http://$STOWAGE_ADDR"
			STOWAGE_LOG=$logf
			export STOWAGE_PID STOWAGE_ADDR STOWAGE_URL STOWAGE_LOG
			return 0
		fi
		stop_pid "$pid"
		if grep -qi 'address already in use' "$logf" 2>/dev/null; then
			log "port $port was taken meanwhile; retrying"
			continue
		fi
		die "registry exited or did not become ready (GET /v2/ != 200 within ${timeout_s}s); its log follows"
	done
	die "registry could not be started after 3 attempts"
}

# stop_stowage : graceful stop of the server started last (SIGTERM).
stop_stowage() {
	[ -n "${STOWAGE_PID:-}" ] || return 0
	stop_pid "$STOWAGE_PID" || return 1
	STOWAGE_PID=""
}

# ---------------------------------------------------------------- docker
# start_dockerd DIR : starts a private dockerd (Debian's docker.io: vfs, no
# iptables, no bridge, its own data/exec root, socket and client config under
# DIR), stopped by PID at exit, and waits until it answers. Defines dk (the
# docker client on that daemon, each command bounded by DOCKER_TIMEOUT,
# default 180 s). 127.0.0.0/8 registries are insecure (plain HTTP) by default.
# Env: DOCKER_CLI=/path/to/docker chooses the client.
start_dockerd() {
	DK=$1
	DOCKERD_BIN=$(command -v dockerd 2>/dev/null || echo /usr/sbin/dockerd)
	[ -x "$DOCKERD_BIN" ] || die "dockerd is not installed (apt-get install docker.io)"
	# Debian's client (/usr/bin/docker) matches Debian's daemon; /usr/local/bin/docker
	# may be a newer client that needs API version negotiation.
	if [ -n "${DOCKER_CLI:-}" ]; then
		DOCKER_BIN=$DOCKER_CLI
	elif [ -x /usr/bin/docker ]; then
		DOCKER_BIN=/usr/bin/docker
	else
		DOCKER_BIN=$(command -v docker) || die "no docker client found (apt-get install docker.io)"
	fi
	mkdir -p "$DK/data" "$DK/exec" "$DK/config"
	DOCKER_SOCK="$DK/docker.sock"
	DOCKERD_LOG="$DK/dockerd.log"
	export DOCKER_CONFIG="$DK/config" # keep the user's ~/.docker (credential helpers...) out
	export DOCKER_BUILDKIT=0          # legacy builder: no buildkit/buildx needed
	unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
	register_log "dockerd log" "$DOCKERD_LOG"
	log "starting dockerd (data root $DK/data)"
	"${SUDO[@]}" "$DOCKERD_BIN" \
		--iptables=false --ip6tables=false --ip-masq=false --bridge=none \
		--storage-driver=vfs \
		--data-root "$DK/data" --exec-root "$DK/exec" \
		--pidfile "$DK/docker.pid" --host "unix://$DOCKER_SOCK" \
		>"$DOCKERD_LOG" 2>&1 &
	DOCKERD_LAUNCH_PID=$!
	register_hook stop_dockerd
	local i ready=0
	for ((i = 0; i < 300; i++)); do # 60 s
		if dk version >/dev/null 2>&1; then
			ready=1
			break
		fi
		if ! "${SUDO[@]}" kill -0 "$DOCKERD_LAUNCH_PID" 2>/dev/null; then
			break
		fi
		sleep 0.2
	done
	[ "$ready" = 1 ] || die "dockerd did not become ready within 60 s"
	log "dockerd ready: $(dk version --format 'server {{.Server.Version}}, client {{.Client.Version}}' 2>/dev/null || true)"
	if dk info 2>/dev/null | grep -q '127.0.0.0/8'; then
		log "dockerd treats 127.0.0.0/8 as an insecure (HTTP) registry"
	fi
}

dk() { run_bounded "${DOCKER_TIMEOUT:-180}" "${SUDO[@]}" env DOCKER_CONFIG="$DOCKER_CONFIG" DOCKER_BUILDKIT=0 "$DOCKER_BIN" -H "unix://$DOCKER_SOCK" "$@"; }

stop_dockerd() {
	local pid cpid
	pid=$("${SUDO[@]}" cat "$DK/docker.pid" 2>/dev/null || true)
	cpid=$("${SUDO[@]}" cat "$DK/exec/containerd/containerd.pid" 2>/dev/null || true)
	[ -n "$pid" ] && { stop_pid "$pid" sudo || log "could not stop dockerd (pid $pid)"; }
	# dockerd stops its own containerd; make sure it is gone.
	[ -n "$cpid" ] && { stop_pid "$cpid" sudo || log "could not stop containerd (pid $cpid)"; }
	[ -n "${DOCKERD_LAUNCH_PID:-}" ] && stop_pid "$DOCKERD_LAUNCH_PID" sudo
	return 0
}
