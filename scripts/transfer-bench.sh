#!/usr/bin/env bash
# Throughput of stowage export and import on a registry of many images
# (docs/performance.md, "Export and import"):
#   1. go run ./scripts/layoutgen writes an OCI layout of N images (default
#      1000 over 10 repositories; each its own config and SIZE-byte layer on
#      one shared 4 MiB base layer),
#   2. stowage import fills a fresh registry A from it,
#   3. stowage export writes A into a layout directory, and into a tar,
#   4. stowage import pushes that layout into a fresh registry B,
#   5. B's tags and digests are compared with A's (export -> import is exact).
# Prints MB/s and images/s for each step.
#
#   scripts/transfer-bench.sh [-n 1000] [-size 262144]
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
lib_init

N=1000
SIZE=262144
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=$2; shift 2 ;;
	-size) SIZE=$2; shift 2 ;;
	*) die "usage: $0 [-n IMAGES] [-size LAYER_BYTES]" ;;
	esac
done

make_tmpdir WORK stowage-transfer-bench
build_stowage
(cd "$STOWAGE_ROOT" && go build -o "$WORK/layoutgen" ./scripts/layoutgen) || die "go build ./scripts/layoutgen failed"
log "writing a layout of $N images ($SIZE-byte layers on a shared 4 MiB base)"
"$WORK/layoutgen" -n "$N" -size "$SIZE" -o "$WORK/gen"

start_stowage "$WORK/a"
A=$STOWAGE_URL
start_stowage "$WORK/b"
B=$STOWAGE_URL

# field JSON NAME : a number from a report
field() { grep -o "\"$2\": *[0-9.e+-]*" "$1" | head -1 | sed 's/.*: *//'; }
# row STEP REPORT.json BYTES_FIELD
row() {
	local s b
	s=$(field "$2" seconds)
	b=$(field "$2" "$3")
	awk -v step="$1" -v s="$s" -v b="$b" -v n="$N" \
		'BEGIN { printf "| %s | %d | %.0f MB | %.1f s | %.1f MB/s | %.0f images/s |\n", step, n, b/1e6, s, b/1e6/s, n/s }'
}

"$STOWAGE_BIN" import --registry "$A" --output json "$WORK/gen" >"$WORK/fill.json"
"$STOWAGE_BIN" export --registry "$A" --output json -o "$WORK/exp" >"$WORK/export.json"
"$STOWAGE_BIN" export --registry "$A" --output json -o "$WORK/exp.tar" >"$WORK/export-tar.json"
"$STOWAGE_BIN" import --registry "$B" --output json "$WORK/exp" >"$WORK/import.json"
"$STOWAGE_BIN" export --registry "$A" --output json -o "$WORK/exp" >"$WORK/rerun.json"

# Every tag of A is in B with the same digest.
got=$(curl -s "$B/acr/v1/bench/repo00/_tags?n=1000" | grep -o '"digest": *"[^"]*"' | sort | sha256sum)
want=$(curl -s "$A/acr/v1/bench/repo00/_tags?n=1000" | grep -o '"digest": *"[^"]*"' | sort | sha256sum)
[ "$got" = "$want" ] || die "B's bench/repo00 tags differ from A's"
imgs=$(field "$WORK/import.json" images)
[ "$imgs" = "$N" ] || die "import pushed $imgs images, want $N"

echo
echo "| step | images | bytes | time | throughput | images/s |"
echo "|---|---|---|---|---|---|"
row "import of the generated layout into an empty registry" "$WORK/fill.json" uploaded
row "export to a directory" "$WORK/export.json" bytes
row "export to a tar file" "$WORK/export-tar.json" bytes
row "import of the export into an empty registry" "$WORK/import.json" uploaded
row "export rerun into the complete directory (verify only)" "$WORK/rerun.json" bytes
log "blobs: $(field "$WORK/export.json" blobs), manifests: $(field "$WORK/export.json" manifests); B matches A"
