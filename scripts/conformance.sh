#!/usr/bin/env bash
# Runs the OCI distribution-spec conformance suite (all four workflows: pull,
# push, content discovery, content management) against a fresh registry.
#
#   scripts/conformance.sh
#
# The suite is built once from the Go module cache into .cache/ (gitignored).
# Env: STOWAGE_TEST_REGISTRY=distribution to run it against CNCF distribution,
#      CONFORMANCE_FILTER="OCI Conformance Test/sha256 blobs" to run a subset,
#      CONFORMANCE_TIMEOUT (seconds, default 600).
# On failure the full results (report.html with every request/response,
# results.yaml, junit.xml) are copied to .cache/conformance-results/.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
lib_init

CONF_MODULE=github.com/opencontainers/distribution-spec/conformance
CONF_VERSION=v0.0.0-20260831232431-97274622c111
CACHE_DIR="$STOWAGE_ROOT/.cache/conformance"
CONF_BIN="$CACHE_DIR/conformance-$CONF_VERSION"
KEEP_RESULTS="$STOWAGE_ROOT/.cache/conformance-results"

make_tmpdir WORK stowage-conformance

# ---------------------------------------------------------------- build the suite
build_conformance() {
	local json dir
	log "building the conformance suite $CONF_MODULE@$CONF_VERSION"
	# Outside any module, so the download does not touch the project's go.mod.
	json=$(cd "$WORK" && GOFLAGS=-mod=mod run_bounded 300 go mod download -json "$CONF_MODULE@$CONF_VERSION") ||
		die "go mod download $CONF_MODULE@$CONF_VERSION failed: $json"
	dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n 1)
	if [ -z "$dir" ] || [ ! -f "$dir/main.go" ]; then
		die "module directory not found in: $json"
	fi
	# The module cache is read-only: build from a writable copy.
	cp -R "$dir" "$WORK/src"
	chmod -R u+w "$WORK/src"
	mkdir -p "$CACHE_DIR"
	(cd "$WORK/src" && GOFLAGS="-mod=mod -buildvcs=false" run_bounded 600 go build -o "$CONF_BIN.tmp.$$" .) ||
		die "building the conformance suite failed"
	mv -f "$CONF_BIN.tmp.$$" "$CONF_BIN"
}

if [ -x "$CONF_BIN" ]; then
	log "using cached $CONF_BIN"
else
	build_conformance
fi

# ---------------------------------------------------------------- run it
start_stowage "$WORK/data"

RESULTS="$WORK/results"
mkdir -p "$RESULTS"
REPORT="$WORK/report.txt"

export OCI_REGISTRY="$STOWAGE_ADDR"
export OCI_TLS=disabled
export OCI_VERSION=1.1
export OCI_RESULTS_DIR="$RESULTS"
export OCI_REPO1=conformance/repo1
export OCI_REPO2=conformance/repo2
export OCI_LOG=warn
export OCI_API_PING=true
export OCI_API_PULL=true
export OCI_API_PUSH=true
export OCI_API_BLOBS_ATOMIC=true
export OCI_API_BLOBS_DELETE=true
export OCI_API_BLOBS_DIGEST_HEADER=true
export OCI_API_BLOBS_MOUNT_ANONYMOUS=true
export OCI_API_BLOBS_UPLOAD_CANCEL=true
export OCI_API_MANIFESTS_ATOMIC=true
export OCI_API_MANIFESTS_DELETE=true
export OCI_API_MANIFESTS_DIGEST_HEADER=true
export OCI_API_MANIFESTS_TAG_PARAM=true # push by digest with ?tag= (Stowage answers OCI-Tag)
export OCI_API_TAGS_ATOMIC=true
export OCI_API_TAGS_DELETE=true
export OCI_API_TAGS_LIST=true
export OCI_API_REFERRER=true
export OCI_DATA_IMAGE=true
export OCI_DATA_INDEX=true
export OCI_DATA_INDEX_LIST=true
export OCI_DATA_SPARSE=false
export OCI_DATA_ARTIFACT=true
export OCI_DATA_SUBJECT=true
export OCI_DATA_SUBJECT_MISSING=true
export OCI_DATA_ARTIFACT_LIST=true
export OCI_DATA_SUBJECT_LIST=true
export OCI_DATA_DATA_FIELD=true
export OCI_DATA_NONDISTRIBUTABLE=true
export OCI_DATA_CUSTOM_FIELDS=true
export OCI_DATA_NO_LAYERS=true
export OCI_DATA_EMPTY_BLOB=true
export OCI_DATA_SHA512=true
if [ -n "${CONFORMANCE_FILTER:-}" ]; then
	export OCI_FILTER_TEST="$CONFORMANCE_FILTER"
fi

log "running the conformance suite against $STOWAGE_ADDR (results in $RESULTS)"
rc=0
# Run from the work dir so that no stray ./oci-conformance.yaml is picked up.
(cd "$WORK" && run_bounded "${CONFORMANCE_TIMEOUT:-600}" "$CONF_BIN") >"$REPORT" 2>&1 || rc=$?

cat "$REPORT"

# ---------------------------------------------------------------- verdict
problems=()
if [ "$rc" -eq 124 ]; then
	problems+=("the suite timed out after ${CONFORMANCE_TIMEOUT:-600}s")
elif [ "$rc" -ne 0 ]; then
	problems+=("the suite exited with status $rc")
fi
if ! grep -q '^OCI Conformance Result: Pass$' "$REPORT"; then
	problems+=("the report does not say 'OCI Conformance Result: Pass'")
fi
if [ ! -s "$RESULTS/results.yaml" ]; then
	problems+=("no results.yaml was written (the suite failed to set up or run)")
elif grep -Eq ':[[:space:]]+(FAIL|Error)[[:space:]]*$' "$RESULTS/results.yaml"; then
	problems+=("results.yaml lists failed APIs or data types")
fi
if grep -Eq ': (FAIL|Error)$' "$REPORT"; then
	problems+=("some tests report FAIL/Error")
fi
if ! kill -0 "$STOWAGE_PID" 2>/dev/null; then
	problems+=("the registry process died during the suite")
fi

if [ "${#problems[@]}" -eq 0 ]; then
	counts=$(sed -n '/^OCI Conformance Result/,/^  Total/p' "$REPORT" | tr -s ' .' ' ' | tr '\n' ';')
	log "PASS: OCI conformance ($counts)"
	exit 0
fi

{
	echo
	echo "===== conformance failures (leaf tests with their errors) ====="
	# Leaf lines look like "  <indent>OCI Conformance Test/.../name: FAIL"
	# followed by "  <indent> - error" lines.
	awk '
		/: (FAIL|Error)$/ { name = $0; sub(/^[ \t]+/, "", name); pending = 1; shown = 0; next }
		pending && /^[ \t]+- / { if (!shown) { print name; shown = 1 } line = $0; sub(/^[ \t]+/, "    ", line); print line; next }
		{ pending = 0 }
	' "$REPORT"
	echo "===== end of conformance failures ====="
	echo
	sed -n '/^API conformance:/,/^$/p' "$REPORT" | grep -E 'FAIL|Error' || true
	sed -n '/^Data conformance:/,/^$/p' "$REPORT" | grep -E 'FAIL|Error' || true
} >&2
rm -rf "$KEEP_RESULTS"
mkdir -p "$KEEP_RESULTS"
cp -R "$RESULTS/." "$KEEP_RESULTS/" 2>/dev/null || true
cp "$REPORT" "$KEEP_RESULTS/report.txt" 2>/dev/null || true
log "full results (report.html has every request/response) copied to $KEEP_RESULTS"
for p in "${problems[@]}"; do
	log "FAIL: $p"
done
exit 1
