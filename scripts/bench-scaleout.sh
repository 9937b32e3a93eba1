#!/usr/bin/env bash
# scripts/bench-scaleout.sh — what scale-out costs and gives: small-image
# push rate and manifest GET req/s (the bench tool's small-push and
# manifest-get scenarios) for
#   sqlite     one node, embedded SQLite (the default)
#   pg-1       one node on PostgreSQL
#   pg-1p      pg-1 behind the round-robin proxy (scripts/rrproxy), one backend
#   pg-2       two nodes on PostgreSQL, one storage directory, behind the proxy
# Then prints the ratios pg-1/sqlite and pg-2/pg-1p (bench --compare; medians
# over rounds): the proxy hop costs the same on both sides of the second. Record ratios, not absolute numbers: the machine is shared.
#
#   STOWAGE_BENCH_POSTGRES=postgres://user:pw@127.0.0.1:5432/db scripts/bench-scaleout.sh [--rounds N] [--images N] [--duration D]
#
# The database should be empty; runs leave their rows (each run uses its own
# repository prefix). Everything listens on 127.0.0.1; servers are stopped by
# PID. Encryption at rest is on (one key file for all nodes), as by default.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
lib_init
cd "$STOWAGE_ROOT" || exit 1

ROUNDS=3 IMAGES=300 DURATION=5s
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--images) IMAGES=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	-h | --help) sed -n '2,17p' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
DB=${STOWAGE_BENCH_POSTGRES:-}
[ -n "$DB" ] || die "STOWAGE_BENCH_POSTGRES is not set (a postgres:// URL of an empty database)"

make_tmpdir WORK stowage-bench-scaleout
build_stowage
go build -o "$WORK/bench" ./bench || die "go build ./bench failed"
go build -o "$WORK/rrproxy" ./scripts/rrproxy || die "go build ./scripts/rrproxy failed"
# One key per database, kept across runs: a database's data stays readable.
mkdir -p "$STOWAGE_ROOT/.cache"
KEY="$STOWAGE_ROOT/.cache/bench-scaleout-key.json"
[ -s "$KEY" ] || printf '{"id": "bench", "current": 1, "versions": {"1": "%s"}}\n' "$(head -c 32 /dev/urandom | base64 -w0)" >"$KEY"
chmod 600 "$KEY"

STARTED=()
# node NAME DATABASE STORAGE: starts a node, prints its URL.
node() {
	local name=$1 db=$2 storage=$3 port pid
	port=$(pick_port)
	mkdir -p "$WORK/$name"
	STOWAGE_DATABASE="$db" STOWAGE_STORAGE_PATH="$storage" STOWAGE_ENCRYPTION_KEY_FILE="$KEY" \
		"$STOWAGE_BIN" serve --addr "127.0.0.1:$port" --data-dir "$WORK/$name" --log-level warn >"$WORK/$name.log" 2>&1 &
	pid=$!
	register_pid "$pid" "$name"
	STARTED+=("$pid")
	wait_http "http://127.0.0.1:$port/v2/" 200 30 "$pid" || die "$name did not start (log: $WORK/$name.log)"
	echo "http://127.0.0.1:$port"
}
stop_all() {
	local p
	for p in "${STARTED[@]}"; do stop_pid "$p"; done
	STARTED=()
}

for ((r = 1; r <= ROUNDS; r++)); do
	for cfg in sqlite pg-1 pg-1p pg-2; do
		d="$WORK/r$r-$cfg"
		case $cfg in
		sqlite) url=$(node "$cfg-r$r" "" "$d/storage") ;;
		pg-1) url=$(node "$cfg-r$r" "$DB" "$d/storage") ;;
		pg-1p | pg-2)
			backends=("$(node "$cfg-a-r$r" "$DB" "$d/storage")")
			[ "$cfg" = pg-2 ] && backends+=("$(node "$cfg-b-r$r" "$DB" "$d/storage")")
			port=$(pick_port)
			"$WORK/rrproxy" -listen "127.0.0.1:$port" "${backends[@]}" >"$WORK/proxy-r$r.log" 2>&1 &
			register_pid "$!" "rrproxy"
			STARTED+=("$!")
			url="http://127.0.0.1:$port"
			wait_http "$url/v2/" 200 30 "$!" || die "rrproxy did not start"
			;;
		esac
		log "round $r: $cfg at $url"
		run_bounded 600 "$WORK/bench" --url "$url" --only small-push,manifest-get --images "$IMAGES" --duration "$DURATION" \
			--json "$WORK/$cfg-$r.json" >"$WORK/$cfg-$r.txt" 2>&1 || log "round $r $cfg: bench failed (see $WORK/$cfg-$r.txt)"
		stop_all
	done
done

files() { local f=() r; for ((r = 1; r <= ROUNDS; r++)); do f+=("$WORK/$1-$r.json"); done; (IFS=,; echo "${f[*]}"); }
echo "## PostgreSQL (one node) vs SQLite (one node)"
"$WORK/bench" --compare "pg-1=$(files pg-1)" "sqlite=$(files sqlite)"
echo
echo "## Two nodes on PostgreSQL vs one, both behind the round-robin proxy"
"$WORK/bench" --compare "pg-2=$(files pg-2)" "pg-1p=$(files pg-1p)"
echo
echo "## The proxy hop: one PostgreSQL node behind the proxy vs direct"
"$WORK/bench" --compare "pg-1p=$(files pg-1p)" "pg-1=$(files pg-1)"
