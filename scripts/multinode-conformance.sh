#!/usr/bin/env bash
# Runs the OCI distribution-spec conformance suite (all four workflows)
# against three `stowage serve` nodes that share one PostgreSQL database and
# one storage directory, through a round-robin reverse proxy
# (scripts/rrproxy): consecutive requests of one upload, push or pull land
# on different nodes. Each node has its own data directory; all use one key
# file (STOWAGE_ENCRYPTION_KEY_FILE). Everything listens on 127.0.0.1 and is
# stopped by PID at exit.
#
#   STOWAGE_MULTINODE_DATABASE=postgres://user:pw@127.0.0.1:port/db scripts/multinode-conformance.sh
#
# The database must be empty (or hold only a previous stowage schema it may
# reuse); scripts/postgres-test.sh creates one and runs this script.
# Env: STOWAGE_NODES (default 3), CONFORMANCE_TIMEOUT (seconds, default 600).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
lib_init

DB=${STOWAGE_MULTINODE_DATABASE:-}
[ -n "$DB" ] || die "STOWAGE_MULTINODE_DATABASE is not set (a postgres:// URL of an empty database); scripts/postgres-test.sh sets it"
NODES=${STOWAGE_NODES:-3}

CONF_MODULE=github.com/opencontainers/distribution-spec/conformance
CONF_VERSION=v0.0.0-20260831232431-97274622c111 # as in scripts/conformance.sh
CACHE_DIR="$STOWAGE_ROOT/.cache/conformance"
CONF_BIN="$CACHE_DIR/conformance-$CONF_VERSION"
make_tmpdir WORK stowage-multinode

if [ ! -x "$CONF_BIN" ]; then
	log "building the conformance suite $CONF_MODULE@$CONF_VERSION"
	json=$(cd "$WORK" && GOFLAGS=-mod=mod run_bounded 300 go mod download -json "$CONF_MODULE@$CONF_VERSION") ||
		die "go mod download $CONF_MODULE@$CONF_VERSION failed: $json"
	dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n 1)
	[ -n "$dir" ] && [ -f "$dir/main.go" ] || die "module directory not found in: $json"
	cp -R "$dir" "$WORK/src"
	chmod -R u+w "$WORK/src"
	mkdir -p "$CACHE_DIR"
	(cd "$WORK/src" && GOFLAGS="-mod=mod -buildvcs=false" run_bounded 600 go build -o "$CONF_BIN.tmp.$$" .) ||
		die "building the conformance suite failed"
	mv -f "$CONF_BIN.tmp.$$" "$CONF_BIN"
fi
build_stowage
(cd "$STOWAGE_ROOT" && go build -o "$WORK/rrproxy" ./scripts/rrproxy) || die "go build ./scripts/rrproxy failed"

# One key for every node.
KEY="$WORK/key.json"
printf '{"id": "multinode-test", "current": 1, "versions": {"1": "%s"}}\n' "$(head -c 32 /dev/urandom | base64 -w0)" >"$KEY"
chmod 600 "$KEY"
mkdir -p "$WORK/storage"

BACKENDS=()
PIDS=()
for ((i = 1; i <= NODES; i++)); do
	port=$(pick_port)
	logf="$WORK/node$i.log"
	STOWAGE_DATABASE="$DB" STOWAGE_STORAGE_PATH="$WORK/storage" STOWAGE_ENCRYPTION_KEY_FILE="$KEY" \
		"$STOWAGE_BIN" serve --addr "127.0.0.1:$port" --data-dir "$WORK/node$i" >"$logf" 2>&1 &
	pid=$!
	register_pid "$pid" "node $i on 127.0.0.1:$port"
	register_log "node $i log" "$logf"
	wait_http "http://127.0.0.1:$port/v2/" 200 "${STOWAGE_START_TIMEOUT:-30}" "$pid" || die "node $i did not start"
	log "node $i: pid $pid on 127.0.0.1:$port"
	BACKENDS+=("http://127.0.0.1:$port")
	PIDS+=("$pid")
done
PPORT=$(pick_port)
"$WORK/rrproxy" -listen "127.0.0.1:$PPORT" "${BACKENDS[@]}" >"$WORK/rrproxy.log" 2>&1 &
PPID_=$!
register_pid "$PPID_" "rrproxy on 127.0.0.1:$PPORT"
register_log "rrproxy log" "$WORK/rrproxy.log"
wait_http "http://127.0.0.1:$PPORT/v2/" 200 30 "$PPID_" || die "rrproxy did not start"
log "round-robin proxy on 127.0.0.1:$PPORT over ${BACKENDS[*]}"

RESULTS="$WORK/results"
mkdir -p "$RESULTS"
REPORT="$WORK/report.txt"
export OCI_REGISTRY="127.0.0.1:$PPORT" OCI_TLS=disabled OCI_VERSION=1.1 OCI_RESULTS_DIR="$RESULTS"
export OCI_REPO1=conformance/repo1 OCI_REPO2=conformance/repo2 OCI_LOG=warn
# The same workflows and data types as scripts/conformance.sh.
for v in API_PING API_PULL API_PUSH API_BLOBS_ATOMIC API_BLOBS_DELETE API_BLOBS_DIGEST_HEADER \
	API_BLOBS_MOUNT_ANONYMOUS API_BLOBS_UPLOAD_CANCEL API_MANIFESTS_ATOMIC API_MANIFESTS_DELETE \
	API_MANIFESTS_DIGEST_HEADER API_MANIFESTS_TAG_PARAM API_TAGS_ATOMIC API_TAGS_DELETE API_TAGS_LIST \
	API_REFERRER DATA_IMAGE DATA_INDEX DATA_INDEX_LIST DATA_ARTIFACT DATA_SUBJECT DATA_SUBJECT_MISSING \
	DATA_ARTIFACT_LIST DATA_SUBJECT_LIST DATA_DATA_FIELD DATA_NONDISTRIBUTABLE DATA_CUSTOM_FIELDS \
	DATA_NO_LAYERS DATA_EMPTY_BLOB DATA_SHA512; do
	export "OCI_$v=true"
done
export OCI_DATA_SPARSE=false

log "running the conformance suite through the proxy"
rc=0
(cd "$WORK" && run_bounded "${CONFORMANCE_TIMEOUT:-600}" "$CONF_BIN") >"$REPORT" 2>&1 || rc=$?
sed -n '/^OCI Conformance Result/,/^  Total/p' "$REPORT"

problems=()
[ "$rc" -eq 0 ] || problems+=("the suite exited with status $rc")
grep -q '^OCI Conformance Result: Pass$' "$REPORT" || problems+=("the report does not say 'OCI Conformance Result: Pass'")
if [ ! -s "$RESULTS/results.yaml" ]; then
	problems+=("no results.yaml was written")
elif grep -Eq ':[[:space:]]+(FAIL|Error)[[:space:]]*$' "$RESULTS/results.yaml"; then
	problems+=("results.yaml lists failed APIs or data types")
fi
grep -Eq ': (FAIL|Error)$' "$REPORT" && problems+=("some tests report FAIL/Error")
for ((i = 0; i < NODES; i++)); do
	kill -0 "${PIDS[$i]}" 2>/dev/null || problems+=("node $((i + 1)) died during the suite")
done
if [ "${#problems[@]}" -eq 0 ]; then
	log "PASS: OCI conformance through a round-robin proxy over $NODES nodes on PostgreSQL"
	exit 0
fi
awk '/: (FAIL|Error)$/ { print; p = 1; next } p && /^[ \t]+- / { print; next } { p = 0 }' "$REPORT" >&2
for p in "${problems[@]}"; do log "FAIL: $p"; done
exit 1
