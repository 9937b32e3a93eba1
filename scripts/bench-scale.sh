#!/usr/bin/env bash
# scripts/bench-scale.sh — what Stowage's requests and passes cost as the
# registry grows (docs/performance.md, "Cost at scale"). For each size N it
# builds a registry of N manifests in N/10 repositories (one of them, "big",
# with N/10 tags) through the database's own transactions (bench/scale),
# starts a real `stowage serve` on it and measures over HTTP and the CLI:
# start time, manifest GET/HEAD over many distinct manifests (cold after the
# start, then warm), catalog and tag-list pages and full walks, usage,
# delete dry-runs, small pushes, GC with nothing and with 10% to collect,
# a retention pass, and the server's peak RSS (VmHWM) after each.
#
#   scripts/bench-scale.sh [--sizes 10000,100000,1000000] [--samples 1000] [--db sqlite|postgres|both]
#
# PostgreSQL: STOWAGE_BENCH_POSTGRES=postgres://user:pw@host:port/db, an
# EMPTY database (each size drops and recreates its public schema).
# Results: one JSON per run in $STOWAGE_ROOT/.cache/bench-scale/ and the
# printed tables. Data (~5 KiB per manifest on disk) is deleted after each run.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
lib_init
cd "$STOWAGE_ROOT" || exit 1

SIZES=10000,100000 SAMPLES=1000 DBS=sqlite
while [ $# -gt 0 ]; do
	case $1 in
	--sizes) SIZES=$2; shift 2 ;;
	--samples) SAMPLES=$2; shift 2 ;;
	--db) DBS=$2; shift 2 ;;
	-h | --help) sed -n '2,17p' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
[ "$DBS" = both ] && DBS=sqlite,postgres
make_tmpdir WORK stowage-bench-scale
build_stowage
go build -o "$WORK/scale" ./bench/scale || die "go build ./bench/scale failed"
OUT="$STOWAGE_ROOT/.cache/bench-scale"
mkdir -p "$OUT"

for db in ${DBS//,/ }; do
	for n in ${SIZES//,/ }; do
		args=()
		if [ "$db" = postgres ]; then
			PG=${STOWAGE_BENCH_POSTGRES:-}
			[ -n "$PG" ] || die "STOWAGE_BENCH_POSTGRES is not set (a postgres:// URL of an empty database)"
			psql -X -q "$PG" -c 'DROP SCHEMA public CASCADE; CREATE SCHEMA public' || die "could not empty $PG"
			args=(--postgres "$PG")
		fi
		echo "== $db, $n manifests"
		"$WORK/scale" --stowage "$STOWAGE_BIN" --manifests "$n" --samples "$SAMPLES" --work "$WORK/data-$db-$n" \
			--json "$OUT/$db-$n.json" "${args[@]}" || die "$db at $n manifests failed (log: $WORK/data-$db-$n/serve.log)"
	done
done
