#!/usr/bin/env bash
# Stowage's test command (see README): run from anywhere, as root or as a user
# with passwordless sudo, on Debian 12 with Go at /usr/local/go.
#
# Stages (all of them run, even after a failure):
#   install      apt-get install what is missing (docker.io skopeo podman docker-registry curl gcc)
#   vet          go vet ./...
#   unit         go test -race -count=1 ./...
#   build        go build -o bin/stowage ./cmd/stowage
#   conformance  scripts/conformance.sh  (OCI distribution-spec conformance suite)
#   deploy       scripts/deploy-test.sh  (systemd-analyze on the unit; helm lint/template on the chart)
#   docker       scripts/e2e-docker.sh   (Docker engine push/pull)
#   skopeo       scripts/e2e-skopeo.sh   (skopeo copy/inspect/list-tags/delete)
#   access       scripts/e2e-access.sh   (tokens, scope maps, quotas, 429s with docker, podman,
#                                         skopeo, crane, oras and regctl; go install the first time)
#   s3           scripts/s3-test.sh      (storage/s3 against versitygw; go install the first time)
#   postgres     scripts/postgres-test.sh (meta/postgres against Debian's PostgreSQL)
#   azure        scripts/azure-test.sh   (storage/azure against Azurite from npm)
# then a summary; exits non-zero when any stage failed.
#
# Env:
#   STOWAGE_SKIP=docker,skopeo        skip stages (names above; "e2e" = docker,skopeo;
#                                     "test" or "go-test" = unit)
#   STOWAGE_TEST_REGISTRY=distribution  run conformance/e2e against CNCF distribution
#   GO_TEST_TIMEOUT=8m                -timeout for go test
#   STOWAGE_CI_SERIAL=1               run the s3, postgres and azure stages one
#                                     after the other at the end, not in the
#                                     background lanes (see "lanes" below)
#   STOWAGE_RACE_SQLITE=1             let -race instrument SQLite's translated C
#                                     code too (modernc.org/sqlite/lib, libc):
#                                     several times slower; for nightly runs
#
# Lanes: the s3, postgres and azure stages each start their own server
# (versitygw, PostgreSQL, Azurite) on a free port and temporary directory,
# and mostly wait on it; they run in two background lanes (postgres | s3
# then azure) while the stages after build run in the foreground. Their
# output is kept in .cache/stages/NAME.log and printed, whole, with its
# "stage NAME:" lines, once the foreground stages are done.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	PATH="/usr/local/go/bin:$PATH"
	export PATH
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo -n); fi

# -race instruments every package, SQLite's C code translated to Go
# (modernc.org/sqlite/lib and modernc.org/libc) too: that multiplies the CPU
# time of every test that opens a database (meta/sqlite: 7x) and watches
# code that is not ours. Our code, the database/sql driver glue
# (modernc.org/sqlite) and every other dependency stay instrumented. Through
# GOFLAGS so that the stage scripts' go test -race runs get it too.
if [ "${STOWAGE_RACE_SQLITE:-}" != 1 ]; then
	GOFLAGS="${GOFLAGS:+$GOFLAGS }-gcflags=modernc.org/sqlite/lib=-race=false -gcflags=modernc.org/libc/...=-race=false"
	export GOFLAGS
fi

say() { printf '\n=== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# ---------------------------------------------------------------- skipping
SKIP=",${STOWAGE_SKIP:-},"
SKIP=${SKIP// /}
SKIP=${SKIP//,e2e,/,docker,skopeo,}
SKIP=${SKIP//,test,/,unit,}
SKIP=${SKIP//,go-test,/,unit,}
SKIP=${SKIP//,gotest,/,unit,}
skipped() { [[ $SKIP == *",$1,"* ]]; }

# ---------------------------------------------------------------- stage runner
STAGE_NAMES=()
STAGE_RESULTS=()
STAGE_TIMES=()
STAGE_NOTES=()

run_stage() { # NAME FUNCTION [ARGS...]
	local name=$1 start rc note=""
	shift
	if skipped "$name"; then
		say "stage $name: SKIPPED (STOWAGE_SKIP)"
		STAGE_NAMES+=("$name")
		STAGE_RESULTS+=(SKIP)
		STAGE_TIMES+=(0)
		STAGE_NOTES+=("")
		return 0
	fi
	say "stage $name: start"
	start=$(date +%s)
	"$@"
	rc=$?
	local dur=$(($(date +%s) - start))
	STAGE_NAMES+=("$name")
	STAGE_TIMES+=("$dur")
	if [ "$rc" -eq 0 ]; then
		STAGE_RESULTS+=(PASS)
		say "stage $name: PASS (${dur}s)"
	else
		STAGE_RESULTS+=(FAIL)
		note="exit status $rc"
		say "stage $name: FAIL (${dur}s, exit status $rc)"
	fi
	[ -n "${STAGE_NOTE:-}" ] && note="${note:+$note; }$STAGE_NOTE"
	STAGE_NOTES+=("$note")
	STAGE_NOTE=""
	return 0
}

# ---------------------------------------------------------------- stages
stage_install() {
	local -a pkgs=()
	need() { # COMMAND PACKAGE
		command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || pkgs+=("$2")
	}
	need curl curl
	if ! skipped unit; then
		need gcc gcc # go test -race needs cgo
		need fish fish # cmd/stowage TestCompletion runs the fish completion script
	fi
	if ! skipped docker || ! skipped access; then
		need dockerd docker.io
	fi
	if ! skipped skopeo || ! skipped access; then
		need skopeo skopeo
	fi
	if ! skipped access; then
		need podman podman
	fi
	if [ "${STOWAGE_TEST_REGISTRY:-stowage}" = distribution ]; then
		need docker-registry docker-registry
	fi
	if ! command -v go >/dev/null 2>&1; then
		echo "go not found (expected at /usr/local/go/bin/go)" >&2
		return 1
	fi
	go version
	if [ "${#pkgs[@]}" -eq 0 ]; then
		echo "all tools present: curl gcc dockerd skopeo ($(skopeo --version 2>/dev/null || echo 'skopeo not needed'))"
		return 0
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "missing ${pkgs[*]} and no apt-get to install them" >&2
		return 1
	fi
	if [ "${#SUDO[@]}" -gt 0 ] && ! command -v sudo >/dev/null 2>&1; then
		echo "missing ${pkgs[*]}; not root and no sudo" >&2
		return 1
	fi
	echo "installing: ${pkgs[*]}"
	local -a apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0)
	# apt-get update only when the package lists are missing or installing fails.
	if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
		timeout 300 "${apt[@]}" update || return 1
	fi
	if ! timeout 600 "${apt[@]}" install --no-install-recommends "${pkgs[@]}"; then
		echo "install failed; running apt-get update and retrying"
		timeout 300 "${apt[@]}" update || return 1
		timeout 600 "${apt[@]}" install --no-install-recommends "${pkgs[@]}" || return 1
	fi
	# gcc without libc6-dev cannot link cgo binaries.
	if [[ " ${pkgs[*]} " == *" gcc "* ]] && ! dpkg -s libc6-dev >/dev/null 2>&1; then
		timeout 600 "${apt[@]}" install --no-install-recommends libc6-dev || return 1
	fi
}

stage_vet() {
	go vet ./...
}

GO_TEST_LOG="$ROOT/.cache/go-test.log"
stage_unit() {
	local rc nok nfail nnone ntfail
	mkdir -p "$ROOT/.cache"
	# The unit stage runs e2e (the real server): an e2e test that skips fails
	# here (internal/testenv). PostgreSQL, S3 and Azure tests skip in this
	# stage; their own stages require them.
	STOWAGE_REQUIRE_E2E=1 go test -race -count=1 -timeout "${GO_TEST_TIMEOUT:-8m}" ./... 2>&1 | tee "$GO_TEST_LOG"
	rc=${PIPESTATUS[0]}
	# Package lines: "ok  <pkg> 0.1s", "FAIL <pkg> 0.1s" / "FAIL <pkg> [build failed]",
	# "?   <pkg> [no test files]"; a lone "FAIL" closes a failed run.
	nok=$(grep -cE '^ok[[:space:]]+[^[:space:]]' "$GO_TEST_LOG")
	nfail=$(grep -cE '^FAIL[[:space:]]+[^[:space:]]' "$GO_TEST_LOG")
	nnone=$(grep -cE '^\?[[:space:]]+[^[:space:]]+[[:space:]]+\[no test files\]' "$GO_TEST_LOG")
	ntfail=$(grep -cE '^[[:space:]]*--- FAIL:' "$GO_TEST_LOG")
	echo
	echo "Go test summary: $nok packages ok, $nfail packages FAIL, $nnone packages without tests; $ntfail failed tests incl. subtests (go test exit status $rc)"
	if [ "$nfail" -gt 0 ] || [ "$rc" -ne 0 ]; then
		echo "Failures:"
		grep -E '^FAIL[[:space:]]+[^[:space:]]|^[[:space:]]*--- FAIL:|^panic:|WARNING: DATA RACE' "$GO_TEST_LOG" | head -n 60
	fi
	STAGE_NOTE="$nok ok, $nfail FAIL packages"
	[ "$rc" -eq 0 ]
}

stage_build() {
	go build -o bin/stowage ./cmd/stowage || return 1
	export STOWAGE_BUILT=1
	ls -l bin/stowage
}

stage_script() { # SCRIPT
	"$ROOT/scripts/$1"
}

# stage_docker: the docker e2e against region east of a replicating pair
# (issue 15: "the docker e2e passes against a region while it replicates"),
# checking at the end that its peer converged; STOWAGE_E2E_GEO=0 runs it
# against a lone registry.
stage_docker() {
	local geo=1
	[ "${STOWAGE_TEST_REGISTRY:-stowage}" = stowage ] || geo=0 # distribution has no peers
	STOWAGE_E2E_GEO="${STOWAGE_E2E_GEO:-$geo}" "$ROOT/scripts/e2e-docker.sh"
}

# ---------------------------------------------------------------- lanes
LANE_DIR="$ROOT/.cache/stages"
LANE_PIDS=()
LANE_STAGES=() # NAME:SCRIPT of every stage given to a lane, in summary order

# start_lane NAME:SCRIPT... : runs the stages one after the other in a
# background subshell; each one's output goes to $LANE_DIR/NAME.log and its
# result (RESULT TIME NOTE) to $LANE_DIR/NAME.result.
start_lane() {
	local spec
	for spec in "$@"; do
		LANE_STAGES+=("$spec")
		rm -f "$LANE_DIR/${spec%%:*}.log" "$LANE_DIR/${spec%%:*}.result"
	done
	(
		trap '[ -n "${LANE_CHILD:-}" ] && kill -TERM "$LANE_CHILD" 2>/dev/null; exit 143' TERM
		for spec in "$@"; do
			name=${spec%%:*}
			STAGE_NAMES=() STAGE_RESULTS=() STAGE_TIMES=() STAGE_NOTES=()
			run_stage "$name" stage_lane_script "${spec#*:}" >"$LANE_DIR/$name.log" 2>&1 </dev/null
			printf '%s\t%s\t%s\n' "${STAGE_RESULTS[0]}" "${STAGE_TIMES[0]}" "${STAGE_NOTES[0]}" >"$LANE_DIR/$name.result"
		done
	) &
	LANE_PIDS+=($!)
}

# stage_lane_script SCRIPT : stage_script, but waited for in the background
# so that the lane's TERM trap can pass the signal on.
stage_lane_script() {
	"$ROOT/scripts/$1" &
	LANE_CHILD=$!
	wait "$LANE_CHILD"
	local rc=$?
	LANE_CHILD=""
	return "$rc"
}

# finish_lanes NAME... : waits for the lanes, then prints the output and
# records the result of each lane stage, in the order given.
finish_lanes() {
	local pid name result time note
	[ "${#LANE_PIDS[@]}" -gt 0 ] || return 0
	say "waiting for the background lanes (${LANE_STAGES[*]%%:*})"
	for pid in "${LANE_PIDS[@]}"; do
		wait "$pid"
	done
	LANE_PIDS=()
	for name in "$@"; do
		[[ " ${LANE_STAGES[*]%%:*} " == *" $name "* ]] || continue
		printf '\n--- output of stage %s (background lane) ---\n' "$name"
		cat "$LANE_DIR/$name.log" 2>/dev/null
		if IFS=$'\t' read -r result time note <"$LANE_DIR/$name.result" 2>/dev/null && [ -n "$result" ]; then
			STAGE_NAMES+=("$name") STAGE_RESULTS+=("$result") STAGE_TIMES+=("$time") STAGE_NOTES+=("$note")
		else
			say "stage $name: FAIL (its lane ended without a result)"
			STAGE_NAMES+=("$name") STAGE_RESULTS+=(FAIL) STAGE_TIMES+=(0) STAGE_NOTES+=("lane ended without a result")
		fi
	done
	LANE_STAGES=()
}

stop_lanes() {
	local pid
	for pid in "${LANE_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${LANE_PIDS[@]}"; do
		wait "$pid" 2>/dev/null
	done
}
trap 'stop_lanes; exit 130' INT
trap 'stop_lanes; exit 143' TERM

# ---------------------------------------------------------------- run
T0=$(date +%s)
say "stowage tests in $ROOT (STOWAGE_SKIP='${STOWAGE_SKIP:-}', registry: ${STOWAGE_TEST_REGISTRY:-stowage})"
run_stage install stage_install
run_stage vet stage_vet
run_stage unit stage_unit
if [ "${STOWAGE_TEST_REGISTRY:-stowage}" = distribution ]; then
	STAGE_NAMES+=(build) STAGE_RESULTS+=(SKIP) STAGE_TIMES+=(0) STAGE_NOTES+=("using CNCF distribution")
else
	run_stage build stage_build
fi
# The servers' stages in two background lanes (see "Lanes" at the top).
if [ "${STOWAGE_CI_SERIAL:-}" != 1 ]; then
	mkdir -p "$LANE_DIR"
	start_lane postgres:postgres-test.sh
	if [ -x "$ROOT/scripts/azure-test.sh" ]; then
		start_lane s3:s3-test.sh azure:azure-test.sh
	else
		start_lane s3:s3-test.sh
	fi
	say "started in the background: postgres | s3$([ -x "$ROOT/scripts/azure-test.sh" ] && echo ', azure'); their output follows the foreground stages"
fi
run_stage conformance stage_script conformance.sh
run_stage geo-conformance stage_script geo-conformance-test.sh
run_stage deploy stage_script deploy-test.sh
run_stage docker stage_docker
run_stage skopeo stage_script e2e-skopeo.sh
run_stage remote stage_script remote-test.sh
if [ "${STOWAGE_TEST_REGISTRY:-stowage}" = stowage ]; then
	run_stage access stage_script e2e-access.sh
	run_stage ui stage_script ui-test.sh
fi
if [ "${STOWAGE_CI_SERIAL:-}" != 1 ]; then
	finish_lanes s3 postgres azure
else
	run_stage s3 stage_script s3-test.sh
	run_stage postgres stage_script postgres-test.sh
	if [ -x "$ROOT/scripts/azure-test.sh" ]; then
		run_stage azure stage_script azure-test.sh
	fi
fi

# ---------------------------------------------------------------- summary
npass=0 nfail=0 nskip=0
say "summary (total $(($(date +%s) - T0))s)"
for ((i = 0; i < ${#STAGE_NAMES[@]}; i++)); do
	printf '  %-12s %-4s %5ss  %s\n' "${STAGE_NAMES[$i]}" "${STAGE_RESULTS[$i]}" "${STAGE_TIMES[$i]}" "${STAGE_NOTES[$i]}"
	case ${STAGE_RESULTS[$i]} in
	PASS) npass=$((npass + 1)) ;;
	FAIL) nfail=$((nfail + 1)) ;;
	*) nskip=$((nskip + 1)) ;;
	esac
done
echo
echo "stages: $npass passed, $nfail failed, $nskip skipped"
[ "$nfail" -eq 0 ]
