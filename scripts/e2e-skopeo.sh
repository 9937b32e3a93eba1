#!/usr/bin/env bash
# End-to-end test with skopeo (Debian's, 1.9) against a fresh registry:
#  - writes an OCI image layout by hand (two layers with known bytes, an
#    image manifest and a two-platform image index),
#  - skopeo copy oci: -> docker://127.0.0.1:PORT/e2e/skopeo:1 (and :2, :multi)
#  - skopeo inspect (digest, layers, raw manifest bytes)
#  - skopeo copy back to dir: and compares every blob byte for byte
#  - skopeo copy registry -> registry into another repository (cross-repo mount)
#    plus an explicit POST ...?mount=&from= check
#  - skopeo list-tags, skopeo delete, then inspect fails with "manifest unknown"
#  - stowage import of skopeo's oci: layout and oci-archive: tar; skopeo reads
#    a layout stowage export wrote
#
# Env: STOWAGE_TEST_REGISTRY=distribution to run it against CNCF distribution.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
lib_init

command -v skopeo >/dev/null 2>&1 || die "skopeo is not installed (apt-get install skopeo)"
command -v curl >/dev/null 2>&1 || die "curl is not installed (apt-get install curl)"

make_tmpdir WORK stowage-e2e-skopeo
start_stowage "$WORK/data"
REG=$STOWAGE_ADDR
T=120 # seconds allowed for any single skopeo command

# Keep skopeo away from the user's registries.conf/auth/policy.
mkdir -p "$WORK/home/.config/containers"
cat >"$WORK/policy.json" <<'EOF'
{"default":[{"type":"insecureAcceptAnything"}]}
EOF
export HOME="$WORK/home"
export REGISTRY_AUTH_FILE="$WORK/auth.json"
echo '{"auths":{}}' >"$REGISTRY_AUTH_FILE"
sk() { run_bounded "$T" skopeo --policy "$WORK/policy.json" "$@"; }

# ---------------------------------------------------------------- build an OCI layout
LAYOUT="$WORK/layout"
mkdir -p "$LAYOUT/blobs/sha256"
printf '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"

sha() { sha256sum "$1" | cut -d' ' -f1; }
fsize() { stat -c %s "$1"; }
# add_blob FILE : moves FILE into the layout, prints its hex digest.
add_blob() {
	local h
	h=$(sha "$1")
	mv -f "$1" "$LAYOUT/blobs/sha256/$h"
	echo "$h"
}
# mk_layer DIR : tar (deterministic) of DIR; prints "<diffid-hex> <blob-hex> <size> <mediatype>"
mk_layer() {
	local dir=$1 compress=$2 tarf="$WORK/layer.tar" diff blob
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$dir" -cf "$tarf" .
	diff=$(sha "$tarf")
	if [ "$compress" = gzip ]; then
		gzip -n -9 -c "$tarf" >"$tarf.gz"
		rm -f "$tarf"
		blob=$(add_blob "$tarf.gz")
		echo "$diff $blob $(fsize "$LAYOUT/blobs/sha256/$blob") application/vnd.oci.image.layer.v1.tar+gzip"
	else
		blob=$(add_blob "$tarf")
		echo "$diff $blob $(fsize "$LAYOUT/blobs/sha256/$blob") application/vnd.oci.image.layer.v1.tar"
	fi
}

# Layer 1 (gzip): small text files with known content.
mkdir -p "$WORK/l1/etc" "$WORK/l1/app"
printf 'hello from the stowage skopeo e2e test\n' >"$WORK/l1/app/hello.txt"
printf 'stowage-e2e\n' >"$WORK/l1/etc/hostname"
# Layer 2 (uncompressed tar): ~3 MiB of random bytes, so the upload is not tiny.
mkdir -p "$WORK/l2/data"
head -c 3145728 /dev/urandom >"$WORK/l2/data/random.bin"

read -r L1_DIFF L1_BLOB L1_SIZE L1_MT < <(mk_layer "$WORK/l1" gzip)
read -r L2_DIFF L2_BLOB L2_SIZE L2_MT < <(mk_layer "$WORK/l2" none)

# mk_image ARCH : writes config + manifest, prints "<manifest-hex> <size>"
mk_image() {
	local arch=$1 cfg man ch mh
	cfg="$WORK/config-$arch.json"
	printf '{"architecture":"%s","os":"linux","config":{"Env":["STOWAGE_E2E=1"],"Cmd":["/app/hello.txt"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s","sha256:%s"]},"history":[{"created_by":"e2e layer 1"},{"created_by":"e2e layer 2"}]}' \
		"$arch" "$L1_DIFF" "$L2_DIFF" >"$cfg"
	local csize
	csize=$(fsize "$cfg")
	ch=$(add_blob "$cfg")
	man="$WORK/manifest-$arch.json"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"%s","digest":"sha256:%s","size":%s},{"mediaType":"%s","digest":"sha256:%s","size":%s}],"annotations":{"org.opencontainers.image.title":"stowage-e2e-%s"}}' \
		"$ch" "$csize" "$L1_MT" "$L1_BLOB" "$L1_SIZE" "$L2_MT" "$L2_BLOB" "$L2_SIZE" "$arch" >"$man"
	local msize
	msize=$(fsize "$man")
	mh=$(add_blob "$man")
	echo "$mh $msize $ch"
}
read -r MAN_AMD MAN_AMD_SIZE CFG_AMD < <(mk_image amd64)
read -r MAN_ARM MAN_ARM_SIZE CFG_ARM < <(mk_image arm64)

IDX="$WORK/index-image.json"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"arm64","os":"linux"}}]}' \
	"$MAN_AMD" "$MAN_AMD_SIZE" "$MAN_ARM" "$MAN_ARM_SIZE" >"$IDX"
IDX_SIZE=$(fsize "$IDX")
IDX_HEX=$(add_blob "$IDX")

# The layout's own index.json: tag "1" = amd64 image, tag "multi" = the index.
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"1"}},{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"multi"}}]}' \
	"$MAN_AMD" "$MAN_AMD_SIZE" "$IDX_HEX" "$IDX_SIZE" >"$LAYOUT/index.json"
log "OCI layout ready: manifest sha256:$MAN_AMD, index sha256:$IDX_HEX, layers sha256:$L1_BLOB sha256:$L2_BLOB"

# ---------------------------------------------------------------- checks
IMG="docker://$REG/e2e/skopeo"
COPY_IMG="docker://$REG/e2e/skopeo-copy"
NOTLS=(--tls-verify=false)

# 1. push the image by tag "1" and "2"
if sk copy --preserve-digests --dest-tls-verify=false --digestfile "$WORK/digest1" "oci:$LAYOUT:1" "$IMG:1" >"$WORK/copy1.log" 2>&1; then
	if [ "$(cat "$WORK/digest1")" = "sha256:$MAN_AMD" ]; then
		check_pass "skopeo copy oci: -> $IMG:1 (digest sha256:$MAN_AMD preserved)"
	else
		check_fail "skopeo copy reported digest $(cat "$WORK/digest1"), expected sha256:$MAN_AMD"
	fi
else
	cat "$WORK/copy1.log" >&2
	die "skopeo copy oci: -> $IMG:1 failed"
fi
if sk copy --preserve-digests --dest-tls-verify=false "oci:$LAYOUT:1" "$IMG:2" >"$WORK/copy2.log" 2>&1; then
	check_pass "skopeo copy oci: -> $IMG:2 (blobs already present)"
else
	cat "$WORK/copy2.log" >&2
	check_fail "skopeo copy oci: -> $IMG:2 failed"
fi

# 2. inspect: digest, layers, raw manifest bytes, config
if sk inspect "${NOTLS[@]}" "$IMG:1" >"$WORK/inspect.json" 2>"$WORK/inspect.err"; then
	ok=1
	grep -q "\"Digest\": \"sha256:$MAN_AMD\"" "$WORK/inspect.json" || { ok=0; check_fail "inspect: digest is not sha256:$MAN_AMD"; }
	grep -q "\"sha256:$L1_BLOB\"" "$WORK/inspect.json" || { ok=0; check_fail "inspect: layer sha256:$L1_BLOB missing"; }
	grep -q "\"sha256:$L2_BLOB\"" "$WORK/inspect.json" || { ok=0; check_fail "inspect: layer sha256:$L2_BLOB missing"; }
	grep -q '"Architecture": "amd64"' "$WORK/inspect.json" || { ok=0; check_fail "inspect: architecture amd64 missing"; }
	grep -Eq '"(1|2)"' "$WORK/inspect.json" || { ok=0; check_fail "inspect: RepoTags missing"; }
	[ "$ok" = 1 ] && check_pass "skopeo inspect $IMG:1 (digest, 2 layers, architecture, tags)"
	[ "$ok" = 1 ] || cat "$WORK/inspect.json" >&2
else
	cat "$WORK/inspect.err" >&2
	check_fail "skopeo inspect $IMG:1 failed"
fi
if sk inspect "${NOTLS[@]}" --raw "$IMG:1" >"$WORK/raw.json" 2>"$WORK/raw.err" &&
	cmp -s "$WORK/raw.json" "$LAYOUT/blobs/sha256/$MAN_AMD"; then
	check_pass "skopeo inspect --raw returns the pushed manifest byte for byte"
else
	cat "$WORK/raw.err" >&2
	check_fail "skopeo inspect --raw differs from the pushed manifest"
fi
if sk inspect "${NOTLS[@]}" --config --raw "$IMG:1" >"$WORK/cfg.json" 2>"$WORK/cfg.err" &&
	cmp -s "$WORK/cfg.json" "$LAYOUT/blobs/sha256/$CFG_AMD"; then
	check_pass "skopeo inspect --config --raw returns the config blob byte for byte"
else
	cat "$WORK/cfg.err" >&2
	check_fail "skopeo inspect --config --raw differs from the pushed config"
fi
# HEAD by digest through the API: Docker-Content-Digest and Content-Type.
hdrs=$(curl -sS -I --max-time 10 -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
	"$STOWAGE_URL/v2/e2e/skopeo/manifests/sha256:$MAN_AMD" 2>&1 || true)
if printf '%s' "$hdrs" | grep -qi "^docker-content-digest: sha256:$MAN_AMD" &&
	printf '%s' "$hdrs" | grep -qi '^content-type: application/vnd.oci.image.manifest.v1+json'; then
	check_pass "HEAD manifest by digest: Docker-Content-Digest and Content-Type"
else
	printf '%s\n' "$hdrs" >&2
	check_fail "HEAD manifest by digest: wrong headers"
fi

# 3. copy back to a dir: and compare every blob byte for byte
if sk copy --src-tls-verify=false "$IMG:1" "dir:$WORK/out" >"$WORK/copyback.log" 2>&1; then
	ok=1
	for h in "$L1_BLOB" "$L2_BLOB" "$CFG_AMD"; do
		if [ -f "$WORK/out/$h" ]; then f="$WORK/out/$h"; else f="$WORK/out/sha256:$h"; fi
		if ! cmp -s "$f" "$LAYOUT/blobs/sha256/$h"; then
			ok=0
			check_fail "blob sha256:$h pulled back differs (or is missing) from what was pushed"
		fi
	done
	cmp -s "$WORK/out/manifest.json" "$LAYOUT/blobs/sha256/$MAN_AMD" || {
		ok=0
		check_fail "manifest pulled back differs from what was pushed"
	}
	[ "$ok" = 1 ] && check_pass "skopeo copy $IMG:1 -> dir: (layers, config and manifest identical)"
	# And the files inside the layers are the ones we wrote.
	mkdir -p "$WORK/x1" "$WORK/x2"
	if tar -xzf "$WORK/out/$L1_BLOB" -C "$WORK/x1" 2>/dev/null && tar -xf "$WORK/out/$L2_BLOB" -C "$WORK/x2" 2>/dev/null &&
		cmp -s "$WORK/x1/app/hello.txt" "$WORK/l1/app/hello.txt" && cmp -s "$WORK/x2/data/random.bin" "$WORK/l2/data/random.bin"; then
		check_pass "file contents inside the pulled layers are intact"
	else
		check_fail "file contents inside the pulled layers differ"
	fi
else
	cat "$WORK/copyback.log" >&2
	check_fail "skopeo copy $IMG:1 -> dir: failed"
fi

# 4. the multi-platform index (skopeo copy --all)
if sk copy --all --preserve-digests --dest-tls-verify=false --digestfile "$WORK/digestm" "oci:$LAYOUT:multi" "$IMG:multi" >"$WORK/copym.log" 2>&1; then
	if [ "$(cat "$WORK/digestm")" = "sha256:$IDX_HEX" ] &&
		sk inspect "${NOTLS[@]}" --raw "$IMG:multi" >"$WORK/rawm.json" 2>/dev/null &&
		cmp -s "$WORK/rawm.json" "$LAYOUT/blobs/sha256/$IDX_HEX"; then
		check_pass "skopeo copy --all of an image index ($IMG:multi = sha256:$IDX_HEX, raw bytes identical)"
	else
		check_fail "image index: digest $(cat "$WORK/digestm" 2>/dev/null), expected sha256:$IDX_HEX, or raw bytes differ"
	fi
	if sk inspect "${NOTLS[@]}" --override-arch arm64 "$IMG:multi" >"$WORK/inspm.json" 2>"$WORK/inspm.err" &&
		grep -q "\"Architecture\": \"arm64\"" "$WORK/inspm.json"; then
		check_pass "skopeo inspect --override-arch arm64 resolves the index to the arm64 image"
	else
		cat "$WORK/inspm.err" "$WORK/inspm.json" >&2 2>/dev/null || true
		check_fail "index platform resolution (arm64) failed"
	fi
else
	cat "$WORK/copym.log" >&2
	check_fail "skopeo copy --all oci:...:multi -> $IMG:multi failed"
fi

if sk inspect "${NOTLS[@]}" --override-arch arm64 --config --raw "$IMG:multi" >"$WORK/cfgm.json" 2>/dev/null &&
	cmp -s "$WORK/cfgm.json" "$LAYOUT/blobs/sha256/$CFG_ARM"; then
	check_pass "arm64 config blob (sha256:$CFG_ARM) read through the index is byte-identical"
else
	check_fail "arm64 config blob read through the index differs"
fi

# 5. registry -> registry into another repository (cross-repo blob mount)
if sk copy --preserve-digests --src-tls-verify=false --dest-tls-verify=false --digestfile "$WORK/digestc" "$IMG:1" "$COPY_IMG:1" >"$WORK/copyc.log" 2>&1 &&
	[ "$(cat "$WORK/digestc")" = "sha256:$MAN_AMD" ]; then
	check_pass "skopeo copy $IMG:1 -> $COPY_IMG:1 (same digest)"
else
	cat "$WORK/copyc.log" >&2
	check_fail "skopeo copy registry -> registry failed or changed the digest"
fi
code=$(http_status "$STOWAGE_URL/v2/e2e/skopeo-copy/blobs/sha256:$L2_BLOB" -I)
check_eq "$code" 200 "HEAD /v2/e2e/skopeo-copy/blobs/sha256:$L2_BLOB status (blob present in the copied repository)"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
	"$STOWAGE_URL/v2/e2e/mounted/blobs/uploads/?mount=sha256:$L2_BLOB&from=e2e/skopeo" || true)
if [ "$code" = 201 ]; then
	check_pass "POST /v2/e2e/mounted/blobs/uploads/?mount=...&from=e2e/skopeo = 201 (cross-repo mount)"
else
	check_fail "cross-repo mount POST ?mount=&from= answered $code, want 201"
fi
code=$(http_status "$STOWAGE_URL/v2/e2e/mounted/blobs/sha256:$L2_BLOB" -I)
check_eq "$code" 200 "HEAD /v2/e2e/mounted/blobs/sha256:$L2_BLOB status (mounted blob readable)"

# 6. list-tags
if sk list-tags "${NOTLS[@]}" "$IMG" >"$WORK/tags.json" 2>"$WORK/tags.err"; then
	tags=$(tr -d ' \n\t' <"$WORK/tags.json")
	if [[ $tags == *'"Tags":['* ]] && [[ $tags == *'"1"'* ]] && [[ $tags == *'"2"'* ]] && [[ $tags == *'"multi"'* ]]; then
		check_pass "skopeo list-tags $IMG: $tags"
	else
		check_fail "skopeo list-tags $IMG: unexpected $tags (want 1, 2, multi)"
	fi
else
	cat "$WORK/tags.err" >&2
	check_fail "skopeo list-tags $IMG failed"
fi

# 7. delete in the copy repository; the source repository is untouched
if sk delete "${NOTLS[@]}" "$COPY_IMG:1" >"$WORK/del.log" 2>&1; then
	check_pass "skopeo delete $COPY_IMG:1"
	if sk inspect "${NOTLS[@]}" "$COPY_IMG:1" >"$WORK/after.json" 2>"$WORK/after.err"; then
		check_fail "skopeo inspect $COPY_IMG:1 still succeeds after delete"
	elif grep -qi 'manifest unknown' "$WORK/after.err"; then
		check_pass "skopeo inspect after delete fails with 'manifest unknown'"
	else
		cat "$WORK/after.err" >&2
		check_fail "skopeo inspect after delete failed, but not with 'manifest unknown'"
	fi
	code=$(http_status "$STOWAGE_URL/v2/e2e/skopeo-copy/manifests/sha256:$MAN_AMD" -I \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json')
	check_eq "$code" 404 "HEAD of the deleted manifest by digest status"
	if sk inspect "${NOTLS[@]}" --raw "$IMG:1" >"$WORK/raw2.json" 2>/dev/null &&
		cmp -s "$WORK/raw2.json" "$LAYOUT/blobs/sha256/$MAN_AMD" &&
		sk copy --src-tls-verify=false "$IMG:1" "dir:$WORK/out2" >/dev/null 2>&1 &&
		cmp -s "$WORK/out2/$L2_BLOB" "$LAYOUT/blobs/sha256/$L2_BLOB"; then
		check_pass "source repository e2e/skopeo still complete after deleting the copy"
	else
		check_fail "source repository e2e/skopeo damaged by deleting the copy"
	fi
else
	cat "$WORK/del.log" >&2
	check_fail "skopeo delete $COPY_IMG:1 failed"
fi

# 8. stowage import of layouts skopeo writes; skopeo reads what stowage export writes
if [ "${STOWAGE_TEST_REGISTRY:-stowage}" = stowage ]; then
	SKL="$WORK/skopeo-layout"
	if sk copy --all --preserve-digests --src-tls-verify=false "$IMG:multi" "oci:$SKL:multi" >"$WORK/skl.log" 2>&1 &&
		"$STOWAGE_BIN" import --registry "$STOWAGE_URL" --repository e2e/from-skopeo "$SKL" >"$WORK/imp.log" 2>&1 &&
		sk inspect "${NOTLS[@]}" --raw "docker://$REG/e2e/from-skopeo:multi" >"$WORK/impm.json" 2>/dev/null &&
		cmp -s "$WORK/impm.json" "$LAYOUT/blobs/sha256/$IDX_HEX" &&
		sk inspect "${NOTLS[@]}" --override-arch arm64 --config --raw "docker://$REG/e2e/from-skopeo:multi" >"$WORK/impc.json" 2>/dev/null &&
		cmp -s "$WORK/impc.json" "$LAYOUT/blobs/sha256/$CFG_ARM"; then
		check_pass "stowage import of skopeo's oci: layout (both platforms, same index digest sha256:$IDX_HEX): $(head -1 "$WORK/imp.log")"
	else
		cat "$WORK/skl.log" "$WORK/imp.log" >&2 2>/dev/null || true
		check_fail "stowage import of a layout written by skopeo copy oci:"
	fi
	if sk copy --preserve-digests --src-tls-verify=false "$IMG:1" "oci-archive:$WORK/skopeo.tar:app:1" >"$WORK/ska.log" 2>&1 &&
		"$STOWAGE_BIN" import --registry "$STOWAGE_URL" --repository e2e/from-archive - <"$WORK/skopeo.tar" >"$WORK/impa.log" 2>&1 &&
		sk inspect "${NOTLS[@]}" --raw "docker://$REG/e2e/from-archive:1" >"$WORK/impa.json" 2>/dev/null &&
		cmp -s "$WORK/impa.json" "$LAYOUT/blobs/sha256/$MAN_AMD"; then
		check_pass "stowage import - < skopeo's oci-archive: tar (ref.name \"app:1\" -> e2e/from-archive:1, digest sha256:$MAN_AMD)"
	else
		cat "$WORK/ska.log" "$WORK/impa.log" >&2 2>/dev/null || true
		check_fail "stowage import of an oci-archive: tar written by skopeo"
	fi
	if "$STOWAGE_BIN" export --registry "$STOWAGE_URL" --filter 'e2e/skopeo:multi' -o "$WORK/exported" >"$WORK/exp.log" 2>&1 &&
		sk copy --all "oci:$WORK/exported:e2e/skopeo:multi" "oci:$WORK/reread:x" >"$WORK/rr.log" 2>&1 &&
		sk inspect --raw "oci:$WORK/exported:e2e/skopeo:multi" >"$WORK/rr.json" 2>/dev/null &&
		cmp -s "$WORK/rr.json" "$LAYOUT/blobs/sha256/$IDX_HEX"; then
		check_pass "skopeo reads the layout stowage export wrote (oci:DIR:e2e/skopeo:multi, every platform): $(head -1 "$WORK/exp.log")"
	else
		cat "$WORK/exp.log" "$WORK/rr.log" >&2 2>/dev/null || true
		check_fail "skopeo could not read the layout stowage export wrote"
	fi
fi

if ! kill -0 "$STOWAGE_PID" 2>/dev/null; then
	check_fail "the registry process died during the test"
fi

log "skopeo e2e: $LIB_PASSES passed, $LIB_FAILURES failed"
[ "$LIB_FAILURES" -eq 0 ]
