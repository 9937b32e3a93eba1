#!/usr/bin/env bash
# scripts/bench-scale.sh — what Stowage's requests and passes cost as the
# registry grows (docs/performance.md, "Cost at scale"). For each size N it
# builds a registry of N manifests in N/10 repositories (one of them, "big",
# with N/10 tags) through the database's own transactions (bench/scale),
# starts a real `stowage serve` on it and measures over HTTP and the CLI:
# first start (migrations), start time, manifest GET/HEAD over many distinct
# manifests (cold after the start, then warm), catalog and tag-list pages and
# full walks, usage (full answers and, where served, pages of n=100 and the
# walk by Link), delete dry-runs, small pushes, GC with nothing and with 10%
# to collect, a retention pass, and the server's peak RSS (VmHWM).
#
#   scripts/bench-scale.sh [--sizes 10000,100000,1000000] [--samples 1000] [--db sqlite|postgres|both]
#                          [--stowage BIN [--commit C]] [--build-only KEPT | --reuse KEPT] [--out DIR] [--skip GROUPS]
#
# --build-only KEPT builds each size into KEPT/<db>-<N> and keeps it (no
# measurement); --reuse KEPT measures a copy of KEPT/<db>-<N> (the kept one
# survives: SQLite's directory copied, objects hard-linked; PostgreSQL's
# database copied as a template). Large sizes are built once, measured by
# several binaries. --stowage measures that binary (default: bin/stowage
# built from this tree), --commit says which commit it was built from.
#
# PostgreSQL: STOWAGE_BENCH_POSTGRES=postgres://user:pw@host:port/db, the
# database a build writes (its public schema is dropped and recreated: one
# size per database when kept); with --reuse, STOWAGE_BENCH_POSTGRES_COPY is
# the database the copy is made in (dropped and recreated).
# Results: one JSON per run in --out (default $STOWAGE_ROOT/.cache/bench-scale/)
# and the printed tables. Fresh builds' data (~5 KiB per manifest on disk)
# is deleted after each run.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
lib_init
cd "$STOWAGE_ROOT" || exit 1

SIZES=10000,100000 SAMPLES=1000 DBS=sqlite BIN= COMMIT= BUILD_ONLY= REUSE= OUT="$STOWAGE_ROOT/.cache/bench-scale" SKIP=
while [ $# -gt 0 ]; do
	case $1 in
	--sizes) SIZES=$2; shift 2 ;;
	--samples) SAMPLES=$2; shift 2 ;;
	--db) DBS=$2; shift 2 ;;
	--stowage) BIN=$2; shift 2 ;;
	--build-only) BUILD_ONLY=$2; shift 2 ;;
	--reuse) REUSE=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--skip) SKIP=$2; shift 2 ;;
	--commit) COMMIT=$2; shift 2 ;;
	-h | --help) sed -n '2,29p' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
[ "$DBS" = both ] && DBS=sqlite,postgres
[ -n "$BUILD_ONLY" ] && [ -n "$REUSE" ] && die "--build-only and --reuse exclude each other"
make_tmpdir WORK stowage-bench-scale
if [ -z "$BIN" ]; then
	build_stowage
	BIN=$STOWAGE_BIN
	COMMIT=$(git -C "$STOWAGE_ROOT" rev-parse HEAD 2>/dev/null)
	[ -n "$(git -C "$STOWAGE_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] && COMMIT="$COMMIT+modified"
fi
TREE=$(git rev-parse HEAD 2>/dev/null)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && TREE="$TREE+modified"
go build -ldflags "-X main.builtFrom=$TREE" -o "$WORK/scale" ./bench/scale || die "go build ./bench/scale failed"
mkdir -p "$OUT"

for db in ${DBS//,/ }; do
	for n in ${SIZES//,/ }; do
		args=()
		if [ "$db" = postgres ]; then
			PG=${STOWAGE_BENCH_POSTGRES:-}
			[ -n "$PG" ] || die "STOWAGE_BENCH_POSTGRES is not set (a postgres:// URL of a database to build in)"
			if [ -n "$REUSE" ]; then
				PG=${STOWAGE_BENCH_POSTGRES_COPY:-}
				[ -n "$PG" ] || die "STOWAGE_BENCH_POSTGRES_COPY is not set (a postgres:// URL of a database to copy the kept one to)"
			else
				psql -X -q "$PG" -c 'DROP SCHEMA public CASCADE; CREATE SCHEMA public' || die "could not empty $PG"
			fi
			args=(--postgres "$PG")
		fi
		[ -n "$SKIP" ] && args+=(--skip "$SKIP")
		if [ -n "$BUILD_ONLY" ]; then
			echo "== build $db, $n manifests, into $BUILD_ONLY/$db-$n"
			mkdir -p "$BUILD_ONLY"
			"$WORK/scale" --build-only --manifests "$n" --work "$BUILD_ONLY/$db-$n" "${args[@]}" || die "building $db at $n manifests failed"
			continue
		fi
		if [ -n "$REUSE" ]; then
			args+=(--reuse "$REUSE/$db-$n")
			echo "== $db, $n manifests (a copy of $REUSE/$db-$n)"
		else
			echo "== $db, $n manifests"
		fi
		"$WORK/scale" --stowage "$BIN" --commit "$COMMIT" --manifests "$n" --samples "$SAMPLES" --work "$WORK/data-$db-$n" \
			--json "$OUT/$db-$n.json" "${args[@]}" || die "$db at $n manifests failed (log: $WORK/data-$db-$n/serve.log)"
	done
done
