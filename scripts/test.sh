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
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	PATH="/usr/local/go/bin:$PATH"
	export PATH
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo -n); fi

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
run_stage conformance stage_script conformance.sh
run_stage geo-conformance stage_script geo-conformance-test.sh
run_stage deploy stage_script deploy-test.sh
run_stage docker stage_script e2e-docker.sh
run_stage skopeo stage_script e2e-skopeo.sh
run_stage remote stage_script remote-test.sh
if [ "${STOWAGE_TEST_REGISTRY:-stowage}" = stowage ]; then
	run_stage access stage_script e2e-access.sh
	run_stage ui stage_script ui-test.sh
fi
run_stage s3 stage_script s3-test.sh
run_stage postgres stage_script postgres-test.sh
if [ -x "$ROOT/scripts/azure-test.sh" ]; then
	run_stage azure stage_script azure-test.sh
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
