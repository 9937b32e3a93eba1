#!/usr/bin/env bash
# Runs storage/s3's tests against a real S3 server: versitygw (the Versity S3
# Gateway) with its POSIX backend in a temporary directory, on a free port of
# 127.0.0.1. Installs versitygw into .cache/bin with `go install` the first
# time (a few minutes; later runs reuse it). Exits with go test's status.
#
# Env:
#   VERSITYGW_VERSION=v1.8.0   the versitygw module version to install
#   GO_TEST_TIMEOUT=10m        -timeout for go test
#   STOWAGE_S3_TEST_ARGS       extra go test arguments (e.g. "-v -run TestAppend")
#   STOWAGE_KEEP_TMP=1         keep the temporary directory (see lib.sh)
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
lib_init

ROOT=$STOWAGE_ROOT
VERSITYGW_VERSION=${VERSITYGW_VERSION:-v1.8.0}
GW_BIN="$ROOT/.cache/bin/versitygw"
GW_STAMP="$ROOT/.cache/bin/versitygw.version" # go-installed binaries do not know their version
T0=$(date +%s)

command -v go >/dev/null 2>&1 || die "go not found (expected at /usr/local/go/bin/go)"
command -v curl >/dev/null 2>&1 || die "curl not found (apt-get install curl)"

# ---------------------------------------------------------------- install
if [ -x "$GW_BIN" ] && [ "$(cat "$GW_STAMP" 2>/dev/null)" = "$VERSITYGW_VERSION" ]; then
	log "using $GW_BIN ($VERSITYGW_VERSION)"
else
	log "installing versitygw $VERSITYGW_VERSION into $ROOT/.cache/bin (go install; takes a few minutes the first time)"
	mkdir -p "$ROOT/.cache/bin" || die "cannot create $ROOT/.cache/bin"
	# From / so that no go.mod or go.work around here takes part.
	(cd / && GOBIN="$ROOT/.cache/bin" GOFLAGS=-buildvcs=false run_bounded 1200 \
		go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION") ||
		die "go install github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION failed"
	echo "$VERSITYGW_VERSION" >"$GW_STAMP"
	log "installed versitygw in $(($(date +%s) - T0))s"
fi

# ---------------------------------------------------------------- start
make_tmpdir TMP stowage-s3
ACCESS_KEY=stowagetest
SECRET_KEY=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
BUCKET=stowage-test
mkdir -p "$TMP/gw" "$TMP/sidecar"

# start_gw PORT LOG [--sidecar DIR] : starts versitygw, prints its PID.
start_gw() {
	local port=$1 logf=$2
	shift 2
	# Credentials through the environment, not the command line (ps).
	ROOT_ACCESS_KEY=$ACCESS_KEY ROOT_SECRET_KEY=$SECRET_KEY \
		"$GW_BIN" --port "127.0.0.1:$port" --quiet posix "$@" "$TMP/gw" >"$logf" 2>&1 &
	echo $!
}

GW_PID="" GW_PORT="" sidecar=()
for ((attempt = 1; attempt <= 4; attempt++)); do
	port=$(pick_port)
	logf="$TMP/versitygw-$port.log"
	pid=$(start_gw "$port" "$logf" "${sidecar[@]}")
	register_pid "$pid" "versitygw on 127.0.0.1:$port"
	register_log "versitygw log" "$logf"
	log "started versitygw pid $pid on 127.0.0.1:$port, data in $TMP/gw"
	# Up when it answers HTTP at all (an anonymous GET / is 403).
	for ((i = 0; i < 150; i++)); do
		[ "$(http_status "http://127.0.0.1:$port/")" != 000 ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if [ "$(http_status "http://127.0.0.1:$port/")" != 000 ]; then
		GW_PID=$pid GW_PORT=$port
		break
	fi
	stop_pid "$pid"
	if grep -qi 'xattrs are not supported' "$logf" && [ "${#sidecar[@]}" -eq 0 ]; then
		log "no extended attributes on $TMP; retrying with a metadata sidecar directory"
		sidecar=(--sidecar "$TMP/sidecar")
		continue
	fi
	if grep -qi 'address already in use' "$logf"; then
		log "port $port was taken meanwhile; retrying"
		continue
	fi
	die "versitygw did not start"
done
[ -n "$GW_PID" ] || die "versitygw could not be started"

# ---------------------------------------------------------------- test
RACE=(-race)
if ! command -v gcc >/dev/null 2>&1; then
	log "no gcc (cgo), so no -race: apt-get install gcc to get it"
	RACE=()
fi
log "go test ./storage/s3/ against versitygw (the tests create bucket $BUCKET)"
T1=$(date +%s)
# STOWAGE_REQUIRE_*: this stage provides the component, so a test that would
# skip for lack of it fails instead (internal/testenv).
# shellcheck disable=SC2086 # STOWAGE_S3_TEST_ARGS is a list of words
(cd "$ROOT" && STOWAGE_REQUIRE_S3=1 STOWAGE_TEST_S3_ENDPOINT="http://127.0.0.1:$GW_PORT" \
	STOWAGE_TEST_S3_ACCESS_KEY=$ACCESS_KEY STOWAGE_TEST_S3_SECRET_KEY=$SECRET_KEY \
	STOWAGE_TEST_S3_BUCKET=$BUCKET STOWAGE_TEST_S3_REGION=us-east-1 \
	go test "${RACE[@]}" -count=1 -timeout "${GO_TEST_TIMEOUT:-10m}" ${STOWAGE_S3_TEST_ARGS:-} ./storage/s3/)
rc=$?
# A registry mirrored over two versitygw servers (started and killed by the
# test itself), one killed mid-run.
log "go test ./e2e -run TestMirrorOfTwoS3Servers (two versitygw servers, one killed mid-run)"
sidecar_env=()
[ "${#sidecar[@]}" -gt 0 ] && sidecar_env=(STOWAGE_TEST_VERSITYGW_SIDECAR=1)
(cd "$ROOT" && env "${sidecar_env[@]}" STOWAGE_REQUIRE_VERSITYGW=1 STOWAGE_REQUIRE_E2E=1 STOWAGE_TEST_VERSITYGW="$GW_BIN" \
	go test -count=1 -timeout 5m -run 'TestMirrorOfTwoS3Servers' -v ./e2e/ 2>&1 | grep -E '^(=== RUN|--- |\s+\S+_test.go|ok|FAIL|PASS)')
rc2=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] && rc=$rc2
if [ "$rc" -eq 0 ]; then
	log "PASS: storage/s3 against versitygw $VERSITYGW_VERSION (tests $(($(date +%s) - T1))s, total $(($(date +%s) - T0))s)"
else
	log "FAIL: go test exit status $rc (total $(($(date +%s) - T0))s)"
fi
exit "$rc"
