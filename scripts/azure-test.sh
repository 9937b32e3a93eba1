#!/usr/bin/env bash
# Runs the Azure Blob backend's tests (storage/azure) against Azurite,
# Microsoft's Azure Storage emulator, started here on 127.0.0.1.
#
#   scripts/azure-test.sh [go test flags, e.g. -v -run TestConformance]
#
# Azurite comes from npm (Node.js and npm must be installed) and is kept in
# .cache/azurite; it is installed only when missing. Its data lives in a
# temporary directory, and it is stopped by PID at exit. Exits with go test's
# status.
#
# Env: AZURITE_VERSION (default 3.37.0), GO_TEST_TIMEOUT (default 10m),
#      STOWAGE_KEEP_TMP=1 keeps Azurite's data and log.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
lib_init

ROOT=$STOWAGE_ROOT
AZURITE_VERSION=${AZURITE_VERSION:-3.37.0}
AZURITE_DIR="$ROOT/.cache/azurite"
AZURITE_BLOB="$AZURITE_DIR/node_modules/azurite/dist/src/blob/main.js"
# The emulator's well-known development account (published in Azurite's README).
ACCOUNT=devstoreaccount1
ACCOUNT_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

command -v node >/dev/null 2>&1 || die "node not found: install Node.js (20 or later) and npm"
command -v go >/dev/null 2>&1 || die "go not found (expected at /usr/local/go/bin/go)"

installed_version() {
	node -p "require('$AZURITE_DIR/node_modules/azurite/package.json').version" 2>/dev/null
}

if [ ! -f "$AZURITE_BLOB" ] || [ "$(installed_version)" != "$AZURITE_VERSION" ]; then
	command -v npm >/dev/null 2>&1 || die "npm not found: install npm to fetch Azurite"
	log "installing azurite@$AZURITE_VERSION into $AZURITE_DIR"
	mkdir -p "$AZURITE_DIR" || die "cannot create $AZURITE_DIR"
	t0=$(date +%s)
	run_bounded 900 npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --loglevel=error \
		"azurite@$AZURITE_VERSION" >&2 || die "npm install azurite@$AZURITE_VERSION failed"
	[ -f "$AZURITE_BLOB" ] || die "npm installed azurite, but $AZURITE_BLOB is missing"
	log "installed azurite $(installed_version) in $(($(date +%s) - t0))s"
fi

make_tmpdir DATA azurite
PORT=""
for ((attempt = 1; attempt <= 3; attempt++)); do
	port=$(pick_port)
	logf="$DATA/azurite-$port.log"
	# node runs Azurite's blob server directly (no npx wrapper), so $! is
	# the server itself and stopping it by PID stops it.
	node "$AZURITE_BLOB" --blobHost 127.0.0.1 --blobPort "$port" --location "$DATA/data" \
		--skipApiVersionCheck --loose --silent --disableTelemetry >"$logf" 2>&1 &
	pid=$!
	register_pid "$pid" "azurite on 127.0.0.1:$port"
	register_log "azurite log 127.0.0.1:$port" "$logf"
	log "started azurite $(installed_version) pid $pid on 127.0.0.1:$port, data $DATA/data"
	for ((i = 0; i < 300; i++)); do # up to 30 s
		if port_in_use "$port" && kill -0 "$pid" 2>/dev/null; then
			PORT=$port
			break 2
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	stop_pid "$pid"
	if grep -qi 'EADDRINUSE' "$logf" 2>/dev/null; then
		log "port $port was taken meanwhile; retrying"
		continue
	fi
	die "azurite exited or did not listen within 30s; its log follows"
done
[ -n "$PORT" ] || die "azurite could not be started after 3 attempts"

export STOWAGE_TEST_AZURE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=$ACCOUNT;AccountKey=$ACCOUNT_KEY;BlobEndpoint=http://127.0.0.1:$PORT/$ACCOUNT;"
export STOWAGE_TEST_AZURE_CONTAINER=stowage-test
# This stage provides Azurite: a test that would skip for lack of it fails
# instead (internal/testenv).
export STOWAGE_REQUIRE_AZURE=1
cd "$ROOT" || exit 1
t0=$(date +%s)
go test -race -count=1 -timeout "${GO_TEST_TIMEOUT:-10m}" "$@" ./storage/azure/
rc=$?
log "go test exited with status $rc after $(($(date +%s) - t0))s"
exit "$rc"
