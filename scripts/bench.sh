#!/usr/bin/env bash
# scripts/bench.sh — Stowage vs CNCF distribution 2.8.2, and Stowage with
# encryption at rest vs without, side by side, in one run.
#
#   scripts/bench.sh [--rounds N] [--quick] [--no-unencrypted] [--out FILE]
#                    [--baseline REV] [--servers LIST] [--scenarios LIST]
#
# Builds bin/stowage and the bench tool (./bench), then for each round and
# each of three servers — stowage (the default: encryption at rest on),
# stowage-unencrypted (STOWAGE_ENCRYPTION=none) and distribution — starts it
# fresh on 127.0.0.1 with a fresh data dir, waits for GET /v2/ = 200, runs
# the bench with --pid of the server (peak RSS), stops the server by PID.
# The order rotates between rounds so no server always runs on a warmer (or
# more fragmented) machine. Finally prints the per-metric medians over the
# rounds, the ratios and the goals (stowage vs distribution; encrypted vs
# unencrypted), and writes them with the exact commands to docs/performance.md.
#
#   --rounds N        rounds (default 3; medians are over rounds)
#   --quick           smoke-run sizes (16 MiB blobs, 1000 tags, 200 repos, 2 s loops)
#   --no-unencrypted  skip stowage-unencrypted (and the encryption comparison)
#   --out FILE        report path (default docs/performance.md)
#   --baseline REV    also build git revision REV (in a temporary detached
#                     worktree, removed at exit) and run it as one more
#                     server, stowage@REV (short SHA), with stowage's config;
#                     prints stowage vs stowage@REV with each median's spread
#                     and the ratio paired round by round: a change's cost.
#   --servers LIST    run only these (comma-separated): stowage,
#                     stowage-unencrypted, distribution, stowage@REV
#   --scenarios LIST  run only these bench scenarios (bench --only), e.g.
#                     small-push,tag-push
# A run with --servers or --scenarios is partial: it prints its tables but
# writes a report only with an explicit --out (docs/performance.md is the
# full run's). A full run keeps whatever docs/performance.md has below the
# line "<!-- end of generated part -->" (hand-written sections).
# Env: BENCH_CANDIDATE=distribution runs distribution in Stowage's slots too
#      (only to test this script while Stowage does not build).
#      STOWAGE_STORAGE_FSYNC=false reaches both Stowage servers (see the report).
#      BENCH_KEEP_TMP=1 keeps the work directory (logs, JSON per round).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	PATH="/usr/local/go/bin:$PATH"
fi

ROUNDS=3
QUICK=()
UNENCRYPTED=1
OUT="$ROOT/docs/performance.md"
OUT_SET=0
BASELINE=""
SERVERS=""
SCENARIOS=""
ARGS=("$@")
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=${2:?--rounds needs a number}; shift 2 ;;
	--quick) QUICK=(--quick); shift ;;
	--no-unencrypted) UNENCRYPTED=0; shift ;;
	--out) OUT=${2:?--out needs a path}; OUT_SET=1; shift 2 ;;
	--baseline) BASELINE=${2:?--baseline needs a git revision}; shift 2 ;;
	--servers) SERVERS=${2:?--servers needs a list}; shift 2 ;;
	--scenarios) SCENARIOS=${2:?--scenarios needs a list}; shift 2 ;;
	-h | --help) sed -n '2,40p' "$0"; exit 0 ;;
	*) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: --rounds must be a positive integer" >&2; exit 2; }

log() { printf '[%s bench] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

BASE_NAME=""
if [ -n "$BASELINE" ]; then
	BASE_SHA=$(git -C "$ROOT" rev-parse --verify --quiet "$BASELINE^{commit}") ||
		die "--baseline $BASELINE: not a git revision"
	BASE_NAME="stowage@$(git -C "$ROOT" rev-parse --short=7 "$BASE_SHA")"
fi

# ---------------------------------------------------------------- cleanup
# Every server we start is recorded here and stopped by PID at exit; a PID
# is removed once stopped so a later reuse of the number is never killed.
SERVER_PID=""
BASE_SRC="" # the baseline's temporary worktree, removed at exit
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stowage-bench.XXXXXX") || exit 1
cleanup() {
	local rc=$?
	set +e
	[ -n "$SERVER_PID" ] && stop_pid "$SERVER_PID"
	if [ -n "$BASE_SRC" ]; then
		git -C "$ROOT" worktree remove --force "$BASE_SRC" >/dev/null 2>&1 ||
			log "could not remove the worktree $BASE_SRC (git worktree prune clears it)"
	fi
	if [ "${BENCH_KEEP_TMP:-}" = 1 ]; then log "keeping $WORK"; else rm -rf "$WORK"; fi
	return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stop_pid PID : SIGTERM (both servers shut down gracefully on it), wait up
# to 15 s, then SIGKILL.
stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
		sleep 0.1
	done
	log "pid $pid ignored SIGTERM; sending SIGKILL"
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
	local i p
	for ((i = 0; i < 100; i++)); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		port_in_use "$p" || { echo "$p"; return 0; }
	done
	die "no free port found"
}

# wait_ready URL PID : polls GET URL/v2/ until 200, for at most 30 s.
wait_ready() {
	local i
	for ((i = 0; i < 150; i++)); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1/v2/")" = 200 ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}

# ---------------------------------------------------------------- servers
DIST_BIN=/usr/bin/docker-registry

# distribution_config DIR PORT : the baseline's config. The access log is
# off (at level error it would still write a line per request to stdout,
# costing distribution CPU that Stowage does not spend); the in-memory
# blob-descriptor cache is on, as in the Debian package's default config.
distribution_config() {
	cat >"$1/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $1/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$2
EOF
}

# stowage_env KIND : the encryption setting of a Stowage server, forced so
# the caller's environment cannot change what a column means (a key file or
# key env would turn encryption back on; the default is the service key).
stowage_env() {
	case $1 in
	stowage | stowage@*) echo STOWAGE_ENCRYPTION=service ;;
	stowage-unencrypted) echo STOWAGE_ENCRYPTION=none ;;
	*) die "stowage_env: unknown kind $1" ;;
	esac
}

# start_server KIND DIR : starts KIND (stowage|stowage-unencrypted|
# distribution|stowage@REV) with data in DIR, sets SERVER_PID and SERVER_URL.
# The machine is shared: a port found free can be taken before the server
# binds it, so a bind failure is retried on another port.
start_server() {
	local attempt
	for ((attempt = 1; attempt <= 5; attempt++)); do
		try_start_server "$@" && return 0
		grep -q 'address already in use' "$2/server.log" || break
		log "$1: port taken before it bound; trying another"
		rm -rf "$2"
	done
	tail -n 30 "$2/server.log" >&2
	die "$1 did not answer GET /v2/ = 200 on $SERVER_URL"
}

try_start_server() {
	local kind=$1 dir=$2 port bin="$ROOT/bin/stowage"
	port=$(pick_port)
	mkdir -p "$dir/data"
	[[ $kind == stowage@* ]] && bin="$WORK/stowage-baseline"
	if [[ $kind == stowage* ]] && [ "${BENCH_CANDIDATE:-stowage}" = stowage ]; then
		# env execs the server, so $! is the server's PID.
		env -u STOWAGE_ENCRYPTION_KEY_FILE -u STOWAGE_ENCRYPTION_KEY_ENV "$(stowage_env "$kind")" \
			"$bin" serve --addr "127.0.0.1:$port" --data-dir "$dir/data" >"$dir/server.log" 2>&1 &
	else
		distribution_config "$dir" "$port"
		"$DIST_BIN" serve "$dir/config.yml" >"$dir/server.log" 2>&1 &
	fi
	SERVER_PID=$!
	SERVER_URL="http://127.0.0.1:$port"
	if ! wait_ready "$SERVER_URL" "$SERVER_PID"; then
		stop_pid "$SERVER_PID"
		SERVER_PID=""
		return 1
	fi
	log "$kind pid $SERVER_PID ready on $SERVER_URL"
}

# show_server_log KIND LOG PID : after a failed run, the useful part of the
# server's log: the start of a Go crash report (the tail would only show
# registers) when the server died, else its last lines.
show_server_log() {
	local first
	first=$(grep -n -m1 -E '^(panic:|fatal error:|SIG[A-Z]+:)' "$2" | cut -d: -f1)
	if ! kill -0 "$3" 2>/dev/null && [ -n "$first" ]; then
		log "$1 (pid $3) crashed; its log from line $first:"
		sed -n "$first,$((first + 60))p" "$2" >&2
	else
		log "bench against $1 failed; last lines of its log:"
		tail -n 30 "$2" >&2
	fi
}

# ---------------------------------------------------------------- build
# The servers of this run.
KNOWN=(stowage stowage-unencrypted distribution ${BASE_NAME:+"$BASE_NAME"})
if [ -n "$SERVERS" ]; then
	IFS=, read -r -a REGISTRIES <<<"$SERVERS"
	for k in "${REGISTRIES[@]}"; do
		[[ " ${KNOWN[*]} " == *" $k "* ]] || die "--servers: unknown server $k (known: ${KNOWN[*]})"
	done
	[ "$(printf '%s\n' "${REGISTRIES[@]}" | sort | uniq -d)" = "" ] || die "--servers lists a server twice"
else
	REGISTRIES=(stowage stowage-unencrypted distribution ${BASE_NAME:+"$BASE_NAME"})
	[ "$UNENCRYPTED" = 1 ] || REGISTRIES=(stowage distribution ${BASE_NAME:+"$BASE_NAME"})
fi
[ ${#REGISTRIES[@]} -gt 0 ] || die "--servers: no server"
has() { [[ " ${REGISTRIES[*]} " == *" $1 "* ]]; }
command -v curl >/dev/null || die "curl is required"
if has distribution && [ ! -x "$DIST_BIN" ]; then
	log "installing docker-registry (CNCF distribution 2.8.2)"
	if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo -n); fi
	"${SUDO[@]}" apt-get install -y docker-registry >&2 || die "apt-get install docker-registry failed"
	# The package enables a system service on :5000; it is not ours to run.
fi
if [ "${BENCH_CANDIDATE:-stowage}" = stowage ]; then
	log "go build -o bin/stowage ./cmd/stowage"
	go build -o bin/stowage ./cmd/stowage || die "building Stowage failed"
fi
log "go build -o $WORK/bench ./bench"
go build -o "$WORK/bench" ./bench || die "building the bench tool failed"
if [ -n "$BASE_NAME" ] && [ "${BENCH_CANDIDATE:-stowage}" = stowage ]; then
	BASE_SRC="$WORK/baseline-src"
	log "git worktree add --detach $BASE_SRC $BASE_SHA; go build ./cmd/stowage there"
	git -C "$ROOT" worktree add --quiet --detach "$BASE_SRC" "$BASE_SHA" >&2 ||
		{ BASE_SRC=""; die "git worktree add $BASE_SHA failed"; }
	(cd "$BASE_SRC" && go build -o "$WORK/stowage-baseline" ./cmd/stowage) ||
		die "building Stowage at $BASELINE failed"
fi

# The scenarios of this run (the names the bench tool knows).
ONLY=()
if [ -n "$SCENARIOS" ]; then
	known=$("$WORK/bench" -h 2>&1 | sed -n 's/.*scenarios to run (default all): //p' | tr -d ')')
	IFS=, read -r -a want <<<"$SCENARIOS"
	for s in "${want[@]}"; do
		[[ ",$known," == *",$s,"* ]] || die "--scenarios: unknown scenario $s (known: $known)"
	done
	ONLY=(--only "$SCENARIOS")
fi
PARTIAL=0
[ -n "$SERVERS" ] || [ -n "$SCENARIOS" ] && PARTIAL=1

# ---------------------------------------------------------------- rounds
# Other work on the machine skews every number; the load is recorded.
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
N=${#REGISTRIES[@]}
FAILED=()
RUN_START=$SECONDS
for ((r = 1; r <= ROUNDS; r++)); do
	# Rotate: round r starts with server (r-1) mod N, so over N rounds each
	# server runs once in each position (with two, the order alternates).
	order=()
	for ((i = 0; i < N; i++)); do order+=("${REGISTRIES[(r - 1 + i) % N]}"); done
	log "round $r/$ROUNDS order: ${order[*]}"
	for kind in "${order[@]}"; do
		dir="$WORK/$kind-$r"
		start_server "$kind" "$dir"
		log "round $r/$ROUNDS: $kind"
		"$WORK/bench" --url "$SERVER_URL" --pid "$SERVER_PID" --disk-dir "$dir" "${QUICK[@]}" "${ONLY[@]}" \
			--manifests-file "$dir/manifests.json" --json "$WORK/$kind-$r.json" 2>&1 | tee "$dir/bench.log" >&2
		if [ "${PIPESTATUS[0]}" -ne 0 ]; then
			# Keep going: partial results still compare, and the failure is
			# reported (with the server's log) at the end.
			FAILED+=("$kind round $r")
			show_server_log "$kind" "$dir/server.log" "$SERVER_PID"
		fi
		# Cold manifest reads: when scenario manifests pushed its set, restart
		# the server on the same data dir and read each manifest once
		# (manifests-cold). Cold = a fresh server process; the OS page cache
		# stays warm (dropping it needs root). Its metrics join the round's JSON.
		if [ -s "$dir/manifests.json" ]; then
			stop_pid "$SERVER_PID"
			log "round $r/$ROUNDS: $kind restarted for manifests-cold"
			start_server "$kind" "$dir"
			"$WORK/bench" --url "$SERVER_URL" --pid "$SERVER_PID" --only manifests-cold \
				--manifests-file "$dir/manifests.json" --json "$WORK/$kind-$r.json" --json-merge 2>&1 |
				tee -a "$dir/bench.log" >&2
			[ "${PIPESTATUS[0]}" -eq 0 ] || { FAILED+=("$kind round $r (manifests-cold)"); show_server_log "$kind" "$dir/server.log" "$SERVER_PID"; }
		fi
		stop_pid "$SERVER_PID"
		SERVER_PID=""
		rm -rf "$dir/data" # GBs per round; the logs stay
	done
done

# ---------------------------------------------------------------- report
files() { local k=$1 r s=""; for ((r = 1; r <= ROUNDS; r++)); do s+="${s:+,}$WORK/$k-$r.json"; done; echo "$s"; }
TABLE=""
if has stowage && has distribution; then
	TABLE=$("$WORK/bench" --compare --goals "stowage=$(files stowage)" "distribution=$(files distribution)") ||
		die "comparing results failed"
	printf '\n%s\n' "$TABLE"
fi
UNENCRYPTED=0
has stowage && has stowage-unencrypted && UNENCRYPTED=1
ENC_TABLE=""
if [ "$UNENCRYPTED" = 1 ]; then
	ENC_TABLE=$("$WORK/bench" --compare --goals --goal-set encryption \
		"encrypted=$(files stowage)" "unencrypted=$(files stowage-unencrypted)") ||
		die "comparing encrypted with unencrypted failed"
	printf '\n%s\n' "$ENC_TABLE"
fi
BASE_TABLE=""
if [ -n "$BASE_NAME" ] && has stowage && has "$BASE_NAME"; then
	BASE_TABLE=$("$WORK/bench" --compare --spread "stowage=$(files stowage)" "$BASE_NAME=$(files "$BASE_NAME")") ||
		die "comparing stowage with $BASE_NAME failed"
	printf '\n%s\n' "$BASE_TABLE"
fi
OTHER_TABLE=""
if [ -z "$TABLE$ENC_TABLE$BASE_TABLE" ]; then
	set_args=()
	for k in "${REGISTRIES[@]}"; do set_args+=("$k=$(files "$k")"); done
	OTHER_TABLE=$("$WORK/bench" --compare --spread "${set_args[@]}") || die "comparing results failed"
	printf '\n%s\n' "$OTHER_TABLE"
fi
RUN_MIN=$(((SECONDS - RUN_START + 30) / 60))
log "rounds took $RUN_MIN min"
COMMIT=$(git -C "$ROOT" describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')

# base_section : the stowage vs stowage@REV comparison as Markdown.
base_section() {
	cat <<EOF
## Cost of a change: stowage vs $BASE_NAME

\`stowage\` is this tree (commit $COMMIT); \`$BASE_NAME\` is
$(git -C "$ROOT" log -1 --format='%h (%s, %cs)' "$BASE_SHA" | cut -c1-150),
built by the same Go from a temporary \`git worktree add --detach\`. Both run
with the same config (STOWAGE_ENCRYPTION=service,
STOWAGE_STORAGE_FSYNC=${STOWAGE_STORAGE_FSYNC:-true}), fresh data dirs, in the
same $ROUNDS rounds, the order rotated. Cells are the median over rounds with
the lowest and highest round in parentheses; the ratio column is
stowage/$BASE_NAME of the medians (below 1 on a rate: the change costs
throughput); the last column pairs the two servers round by round, which
cancels most of a shared machine's drift between rounds.
Run: $DATE, load average at start $LOAD_START, at end $LOAD_END.

\`\`\`sh
scripts/bench.sh ${ARGS[*]}
\`\`\`

$BASE_TABLE
EOF
}

# enc_summary : one sentence from ENC_TABLE's goal rows (measured factor and
# status, in goal order: monolithic, chunked, pull; concurrency 1, 4).
enc_summary() {
	awk -F'|' '
		function t(s) { gsub(/^ +| +$/, "", s); return s }
		t($3) ~ / of unencrypted$/ { v = t($3); sub(/ of unencrypted$/, "", v); m[++n] = v; st[n] = t($4) }
		/goals met\./ { met = $0 }
		END {
			printf "encrypted/unencrypted throughput, monolithic push: %s at concurrency 1 (%s), %s at 4 (%s); ", m[1], st[1], m[2], st[2]
			printf "chunked push: %s at 1 (%s), %s at 4 (%s); ", m[3], st[3], m[4], st[4]
			printf "pull: %s at 1 (%s), %s at 4 (%s). %s\n", m[5], st[5], m[6], st[6], met
		}' <<<"$ENC_TABLE"
}

mem_gib=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mode="full"
[ ${#QUICK[@]} -gt 0 ] && mode="quick (smoke-run sizes: not representative)"
candidate="STOWAGE_ENCRYPTION=service bin/stowage serve --addr 127.0.0.1:PORT --data-dir DIR  # stowage (the default)"
unencrypted="STOWAGE_ENCRYPTION=none bin/stowage serve --addr 127.0.0.1:PORT --data-dir DIR     # stowage-unencrypted"
if [ "${BENCH_CANDIDATE:-stowage}" != stowage ]; then
	candidate="$DIST_BIN serve config.yml  # BENCH_CANDIDATE=distribution: script self-test"
	unencrypted=$candidate
fi
if [ "$UNENCRYPTED" != 1 ]; then
	unencrypted=""
fi
aes="no"
grep -qw aes /proc/cpuinfo && grep -qw pclmulqdq /proc/cpuinfo && aes="yes"
mkdir -p "$(dirname "$OUT")"

# A partial run (some servers or scenarios) writes a short report, and only
# where --out says: docs/performance.md holds the full run.
if [ "$PARTIAL" = 1 ] || [ -z "$TABLE" ]; then
	if [ "$OUT_SET" = 1 ]; then
		{
			printf '# Benchmark: %s\n\n' "${REGISTRIES[*]}"
			printf -- '- Date: %s; commit %s; %s CPUs; load average at start %s, at end %s\n' \
				"$DATE" "$COMMIT" "$(nproc)" "$LOAD_START" "$LOAD_END"
			printf -- '- Mode: %s, %s round(s); scenarios: %s\n' "$mode" "$ROUNDS" "${SCENARIOS:-all}"
			[ ${#FAILED[@]} -eq 0 ] || printf -- '- **Failed runs:** %s\n' "${FAILED[*]}"
			[ -n "$BASE_TABLE" ] || printf '\n```sh\nscripts/bench.sh %s\n```\n' "${ARGS[*]}"
			[ -z "$TABLE" ] || printf '\n%s\n' "$TABLE"
			[ -z "$ENC_TABLE" ] || printf '\n%s\n' "$ENC_TABLE"
			[ -z "$BASE_TABLE" ] || printf '\n%s\n' "$(base_section)"
			[ -z "$OTHER_TABLE" ] || printf '\n%s\n' "$OTHER_TABLE"
		} >"$OUT"
		log "wrote $OUT"
	else
		log "partial run: no report written (docs/performance.md is the full run's; --out FILE keeps this one)"
	fi
	[ ${#FAILED[@]} -eq 0 ] || die "bench failed for: ${FAILED[*]}"
	exit 0
fi

# Hand-written sections below this line in the old report are kept.
KEEP_MARK='<!-- end of generated part -->'
KEPT=""
[ -f "$OUT" ] && KEPT=$(sed -n "/^$KEEP_MARK\$/,\$p" "$OUT" | sed 1d)
{
	cat <<EOF
# Performance: Stowage vs CNCF distribution

Generated by \`scripts/bench.sh\` down to the line \`<!-- end of generated part -->\`
(do not edit that part by hand; re-run the script). The sections below that
line are written by hand, and the script keeps them.

- Date: $DATE
- Machine: $(nproc) CPUs (${cpu:-unknown}), ${mem_gib} GiB RAM, Linux $(uname -r)
- Built from: commit $COMMIT
- Go: $(go version | awk '{print $3}'); baseline: $("$DIST_BIN" --version 2>/dev/null | awk '{print $2, $3}')
- Load average (1/5/15 min) at start: $LOAD_START; at end: $LOAD_END
- Mode: $mode, $ROUNDS round(s); every number below is the median over rounds
- Servers: ${REGISTRIES[*]} (order rotated between rounds); the rounds took $RUN_MIN min
EOF
	if [ ${#FAILED[@]} -gt 0 ]; then
		printf -- '- **Failed runs:** %s (their missing metrics are marked)\n' "${FAILED[*]}"
	fi
	cat <<EOF

## How it was measured

\`\`\`sh
scripts/bench.sh ${ARGS[*]}
# which, per round and server (the order rotates between rounds), runs:
go build -o bin/stowage ./cmd/stowage && go build -o bench ./bench
$candidate
${unencrypted:+$unencrypted
}$DIST_BIN serve config.yml
${BASE_NAME:+git worktree add --detach TMP $BASE_SHA && (cd TMP && go build -o stowage-baseline ./cmd/stowage)
STOWAGE_ENCRYPTION=service stowage-baseline serve --addr 127.0.0.1:PORT --data-dir DIR  # $BASE_NAME
}bench --url http://127.0.0.1:PORT --pid SERVER_PID ${QUICK[*]:+${QUICK[*]} }--json ROUND.json
bench --compare --goals stowage=R1.json,R2.json,... distribution=R1.json,R2.json,...
${unencrypted:+bench --compare --goals --goal-set encryption encrypted=R1.json,... unencrypted=R1.json,...
}\`\`\`

Each server starts fresh (empty data dir in /tmp) and is stopped with SIGTERM
after its run.

Durability differs: Stowage fsyncs every blob and its directory entry before
it acknowledges a push (\`storage.filesystem.fsync\`, default true), so an
acknowledged push survives a power loss; distribution 2.8.2 never fsyncs (both
survive a process crash). That costs Stowage most on the 64 MiB pushes. For a
like-for-like comparison run \`STOWAGE_STORAGE_FSYNC=false scripts/bench.sh\`.
${unencrypted:+The setting applies to both Stowage servers, so the encryption comparison
below is like for like either way. }In this run: STOWAGE_STORAGE_FSYNC=${STOWAGE_STORAGE_FSYNC:-true}.

Distribution's config.yml:

\`\`\`yaml
$(distribution_config "$WORK" PORT && sed "s#$WORK/data#DIR#" "$WORK/config.yml")
\`\`\`

Scenarios (see \`bench/\`): monolithic push (POST + PUT) and chunked push (8 MiB
PATCHes + PUT) of distinct random blobs at concurrency 1 and 4, GET of those
blobs at concurrency 1 and 4 (MB = 10^6 bytes); small images (config + 3 × 16 KiB
layers, HEAD/POST/PUT per blob, then manifest by tag) at concurrency 16;
manifest GET by tag and blob HEAD at concurrency 32 for a fixed time; the same
manifest PUT under many tags at concurrency 8; the full tag list without \`n\`
(\`tag_list_ms\`, as skopeo asks) and in pages of \`n=1000\` (\`tag_list_n1000_ms\`),
and the full \`/v2/_catalog\` with \`?n=1000\`, always following \`Link\`: time to
fetch every page (JSON decoding is off the clock), median of 5 listings each;
peak RSS is the server's VmHWM at the end of its run. The bench client runs on
the same machine and shares its CPUs with the server.

## Results

Stowage here is its default configuration, encryption at rest on
(STOWAGE_ENCRYPTION=service), with STOWAGE_STORAGE_FSYNC=${STOWAGE_STORAGE_FSYNC:-true}.

$TABLE
EOF
	if [ "$UNENCRYPTED" = 1 ]; then
		cat <<EOF

## Encryption at rest: cost

Goal (issue 4): with encryption at rest on, the default, 64 MiB push and pull
throughput is at least 80% of the same binary's with \`STOWAGE_ENCRYPTION=none\`.
Both servers run in every round of the run above, in the rotated order, with
the same bench, sizes and fsync setting; "encrypted" is the \`stowage\` column
of the table above, "unencrypted" is \`stowage-unencrypted\`.

What encryption adds: each blob gets its own random data key, wrapped by the
key-encryption key (here the service key in \`DIR/keys/service.json\`) and kept
as a row in the metadata database; its bytes are sealed with AES-256-GCM in
64 KiB segments (28 bytes of nonce and tag each) as they are written, and
every segment is opened and authenticated again on a pull. Pulls therefore
cannot use sendfile(2): unencrypted, \`GET /v2/…/blobs/…\` hands the file to
the kernel, which copies from the page cache to the socket; encrypted, every
byte is read into the process, decrypted and written to the socket. On this
machine the CPU has AES instructions (aes, pclmulqdq): $aes; Go's AES-GCM
uses them. The bench client shares the same $(nproc) CPUs, so any CPU the
server spends on AES-GCM is taken from the client too. The goals are on the
six big-blob rows; the other rows are shown for completeness, and those that
encryption does not touch (manifest GET, blob HEAD, tag and catalog listing)
show how far this machine's noise alone moves a ratio.

Result: $(enc_summary)

$ENC_TABLE
EOF
	fi
	if [ -n "$BASE_TABLE" ]; then
		printf '\n'
		base_section
	fi
	printf '\n%s\n' "$KEEP_MARK"
	[ -z "$KEPT" ] || printf '%s\n' "$KEPT"
} >"$OUT"
log "wrote $OUT"

if [ ${#FAILED[@]} -gt 0 ]; then
	die "bench failed for: ${FAILED[*]}"
fi
