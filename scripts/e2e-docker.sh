#!/usr/bin/env bash
# End-to-end test with the Docker engine (Debian's docker.io) against a fresh
# registry. A private dockerd (vfs, no iptables, no bridge, own data/exec root
# and socket) is started and stopped by PID. Nothing needs the network:
#  - docker import of a tarball with known files      -> e2e/imported:v1
#  - docker build FROM scratch + COPY (legacy builder) -> e2e/app:v1
#  - docker build FROM e2e/app:v1 + one more file     -> e2e/app:v2 (shares layers)
#  - push, rmi, pull by tag, compare image IDs and file bytes (docker export)
#  - pull by digest, push to another repository (cross-repo mount), tags list
#  - (Stowage only) a push over a write-locked tag is denied naming the lock;
#    delete --dry-run predicts what gc then frees; shared layers still pull
#  - (Stowage only) the Dockerfile's image: built, run with its defaults
#    (healthy, auth on) and with TLS from a --config file (healthy: the
#    health check reads that file), pushed into a Stowage container of
#    itself and pulled back from it by digest (see the section at the end)
# 127.0.0.0/8 registries are insecure (plain HTTP) by default in dockerd.
#
# Env: STOWAGE_TEST_REGISTRY=distribution to run it against CNCF distribution,
#      DOCKER_CLI=/path/to/docker to choose the client,
#      STOWAGE_E2E_GEO=1 to run it against a region of a replicating pair and
#      check at the end that its peer holds the same (scripts/geo-lib.sh).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
lib_init

command -v curl >/dev/null 2>&1 || die "curl is not installed (apt-get install curl)"

make_tmpdir WORK stowage-e2e-docker
GEO_SERVE_ARGS=()
if [ "${STOWAGE_E2E_GEO:-}" = 1 ]; then
	. "$(dirname "$0")/geo-lib.sh"
	geo_config "$WORK"
fi
start_stowage "$WORK/data" "${GEO_SERVE_ARGS[@]}"
[ "${STOWAGE_E2E_GEO:-}" = 1 ] && geo_start_peer "$WORK"
REG=$STOWAGE_ADDR

# ---------------------------------------------------------------- dockerd
start_dockerd "$WORK/docker"

CTX="$WORK/ctx"
mkdir -p "$CTX/files/conf" "$CTX/files/data" "$WORK/import/conf" "$WORK/import/data"
printf 'hello from the stowage docker e2e test\n' >"$CTX/files/hello.txt"
printf 'stowage-e2e\n' >"$CTX/files/conf/stowage.conf"
head -c 2097152 /dev/urandom >"$CTX/files/data/random.bin"
printf 'second image layer\n' >"$CTX/extra.txt"
cat >"$CTX/Dockerfile" <<'EOF'
FROM scratch
COPY files/hello.txt /hello.txt
COPY files/conf/ /conf/
COPY files/data/ /data/
CMD ["/hello.txt"]
EOF
cat >"$CTX/Dockerfile.v2" <<EOF
FROM $REG/e2e/app:v1
COPY extra.txt /extra.txt
EOF
printf 'imported with docker import\n' >"$WORK/import/hello.txt"
printf 'stowage-import\n' >"$WORK/import/conf/stowage.conf"
head -c 1048576 /dev/urandom >"$WORK/import/data/blob.bin"
tar -C "$WORK/import" -cf "$WORK/import.tar" .

# push IMAGE LOGFILE : docker push, prints the manifest digest from its output.
push() {
	local out
	if ! dk push "$1" >"$2" 2>&1; then
		cat "$2" >&2
		return 1
	fi
	out=$(sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\).*/\1/p' "$2" | tail -n 1)
	[ -n "$out" ] || {
		cat "$2" >&2
		return 1
	}
	echo "$out"
}

# verify_files IMAGE SRCDIR FILE... : docker create + export, compare bytes.
verify_files() {
	local img=$1 src=$2 name f ok=1
	shift 2
	name="e2e-verify-$RANDOM$RANDOM"
	dk create --name "$name" "$img" /hello.txt >/dev/null 2>"$WORK/create.err" || {
		cat "$WORK/create.err" >&2
		return 1
	}
	rm -rf "$WORK/export" && mkdir -p "$WORK/export"
	if ! dk export "$name" | tar -C "$WORK/export" -xf - 2>"$WORK/export.err"; then
		cat "$WORK/export.err" >&2
		ok=0
	fi
	dk rm "$name" >/dev/null 2>&1 || true
	for f in "$@"; do
		if ! cmp -s "$WORK/export/${f#*=}" "$src/${f%%=*}"; then
			log "file /${f#*=} of $img differs from $src/${f%%=*}"
			ok=0
		fi
	done
	[ "$ok" = 1 ]
}

APP1="$REG/e2e/app:v1"
APP2="$REG/e2e/app:v2"
IMP="$REG/e2e/imported:v1"
APP_FILES=(files/hello.txt=hello.txt files/conf/stowage.conf=conf/stowage.conf files/data/random.bin=data/random.bin)

# ---------------------------------------------------------------- build + import
if dk build -q -t "$APP1" -f "$CTX/Dockerfile" "$CTX" >"$WORK/build1.log" 2>&1; then
	check_pass "docker build FROM scratch -> $APP1"
else
	cat "$WORK/build1.log" >&2
	die "docker build of $APP1 failed"
fi
if dk import "$WORK/import.tar" "$IMP" >"$WORK/import.log" 2>&1; then
	check_pass "docker import -> $IMP"
else
	cat "$WORK/import.log" >&2
	die "docker import failed"
fi
APP1_ID=$(dk inspect --format '{{.Id}}' "$APP1")
IMP_ID=$(dk inspect --format '{{.Id}}' "$IMP")

# ---------------------------------------------------------------- push
if APP1_DIGEST=$(push "$APP1" "$WORK/push1.log"); then
	check_pass "docker push $APP1 ($APP1_DIGEST)"
else
	die "docker push $APP1 failed"
fi
if IMP_DIGEST=$(push "$IMP" "$WORK/push-imp.log"); then
	check_pass "docker push $IMP ($IMP_DIGEST)"
else
	check_fail "docker push $IMP failed"
	IMP_DIGEST=""
fi

# Second tag sharing all layers: every layer must already exist.
dk tag "$APP1" "$REG/e2e/app:latest"
if DIG=$(push "$REG/e2e/app:latest" "$WORK/push-latest.log"); then
	if [ "$DIG" = "$APP1_DIGEST" ] && ! grep -q 'Pushed' "$WORK/push-latest.log"; then
		check_pass "docker push of a second tag (e2e/app:latest): same digest, no layer re-uploaded"
	else
		cat "$WORK/push-latest.log" >&2
		check_fail "second tag: digest $DIG (want $APP1_DIGEST) or layers were uploaded again"
	fi
else
	check_fail "docker push $REG/e2e/app:latest failed"
fi

# A second image sharing the base layers.
if dk build -q -t "$APP2" -f "$CTX/Dockerfile.v2" "$CTX" >"$WORK/build2.log" 2>&1 &&
	APP2_DIGEST=$(push "$APP2" "$WORK/push2.log"); then
	if [ "$(grep -c 'Layer already exists' "$WORK/push2.log")" -ge 3 ]; then
		check_pass "docker push $APP2 ($APP2_DIGEST): shared layers already existed"
	else
		cat "$WORK/push2.log" >&2
		check_fail "docker push $APP2: shared layers were not recognised as existing"
	fi
else
	cat "$WORK/build2.log" >&2
	check_fail "docker build/push of $APP2 failed"
	APP2_DIGEST=""
fi

# Another repository: docker mounts the blobs from e2e/app.
dk tag "$APP1" "$REG/e2e/app-copy:v1"
if DIG=$(push "$REG/e2e/app-copy:v1" "$WORK/push-copy.log"); then
	if [ "$DIG" = "$APP1_DIGEST" ]; then
		if grep -q 'Mounted from e2e/app' "$WORK/push-copy.log"; then
			check_pass "docker push to another repository mounted the layers (Mounted from e2e/app)"
		else
			cat "$WORK/push-copy.log" >&2
			check_fail "docker push to e2e/app-copy did not mount layers from e2e/app"
		fi
	else
		check_fail "docker push to e2e/app-copy: digest $DIG, want $APP1_DIGEST"
	fi
else
	check_fail "docker push $REG/e2e/app-copy:v1 failed"
fi

# Registry view: tags list and manifest digest header.
tags=$(curl -s --max-time 10 "$STOWAGE_URL/v2/e2e/app/tags/list" | tr -d ' \n\t' || true)
if [[ $tags == *'"v1"'* ]] && [[ $tags == *'"v2"'* ]] && [[ $tags == *'"latest"'* ]]; then
	check_pass "GET /v2/e2e/app/tags/list: $tags"
else
	check_fail "GET /v2/e2e/app/tags/list: $tags (want v1, v2, latest)"
fi
hdr=$(curl -s -I --max-time 10 -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
	"$STOWAGE_URL/v2/e2e/app/manifests/v1" | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
check_eq "$hdr" "$APP1_DIGEST" "HEAD /v2/e2e/app/manifests/v1: Docker-Content-Digest equals the push digest"

# ---------------------------------------------------------------- encryption at rest
# Every object docker pushed is stored encrypted (on by default): each layer
# and config of e2e/app:v1 is on disk as an STWC2 object that does not hold
# the bytes the registry serves for it.
manifest=$(curl -s --max-time 10 -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
	"$STOWAGE_URL/v2/e2e/app/manifests/v1")
blobs=$(printf '%s' "$manifest" | grep -o 'sha256:[0-9a-f]\{64\}' | sort -u)
enc_ok=1
nblobs=0
for d in $blobs; do
	hex=${d#sha256:}
	f="$WORK/data/storage/blobs/sha256/${hex:0:2}/$hex"
	curl -s --max-time 30 -o "$WORK/served.bin" "$STOWAGE_URL/v2/e2e/app/blobs/$d"
	nblobs=$((nblobs + 1))
	if [ "$(head -c 5 "$f" 2>/dev/null)" != STWC2 ]; then
		log "$f does not start with the encryption header"
		enc_ok=0
	fi
	# The first 256 bytes the registry serves must not appear in the stored file.
	head -c 256 "$WORK/served.bin" >"$WORK/needle.bin"
	if [ -s "$WORK/needle.bin" ] && grep -qaF -f <(head -c 256 "$WORK/served.bin" | od -An -tx1 | tr -d ' \n') <(od -An -tx1 "$f" | tr -d ' \n'); then
		log "$f holds the plaintext of $d"
		enc_ok=0
	fi
	if [ "$(sha256sum <"$WORK/served.bin" | cut -d' ' -f1)" != "$hex" ]; then
		log "blob $d served with a different digest"
		enc_ok=0
	fi
done
if [ "$enc_ok" = 1 ] && [ "$nblobs" -ge 2 ]; then
	check_pass "encryption at rest: the $nblobs blobs of $APP1 are stored encrypted (STWC2, no plaintext on disk) and served with their digests"
else
	check_fail "encryption at rest: blobs of $APP1 stored in plain text, or served wrong ($nblobs checked)"
fi

# ---------------------------------------------------------------- remove locally, pull back
dk rmi -f "$APP1" "$APP2" "$IMP" "$REG/e2e/app:latest" "$REG/e2e/app-copy:v1" >/dev/null 2>&1 || true
if [ -n "$(dk images -q 2>/dev/null)" ]; then
	dk images >&2 || true
	check_fail "images still present locally after docker rmi"
fi

if dk pull "$APP1" >"$WORK/pull1.log" 2>&1; then
	if [ "$(dk inspect --format '{{.Id}}' "$APP1")" = "$APP1_ID" ]; then
		check_pass "docker pull $APP1: same image ID $APP1_ID"
	else
		check_fail "docker pull $APP1: image ID changed"
	fi
	if verify_files "$APP1" "$CTX" "${APP_FILES[@]}"; then
		check_pass "files of $APP1 pulled back are byte-identical"
	else
		check_fail "files of $APP1 pulled back differ"
	fi
else
	cat "$WORK/pull1.log" >&2
	check_fail "docker pull $APP1 failed"
fi

if [ -n "$IMP_DIGEST" ]; then
	if dk pull "$IMP" >"$WORK/pull-imp.log" 2>&1 && [ "$(dk inspect --format '{{.Id}}' "$IMP")" = "$IMP_ID" ] &&
		verify_files "$IMP" "$WORK/import" hello.txt=hello.txt conf/stowage.conf=conf/stowage.conf data/blob.bin=data/blob.bin; then
		check_pass "docker pull $IMP: same image ID, files byte-identical"
	else
		cat "$WORK/pull-imp.log" >&2
		check_fail "docker pull $IMP failed or content differs"
	fi
fi

if [ -n "$APP2_DIGEST" ]; then
	if dk pull "$APP2" >"$WORK/pull2.log" 2>&1 &&
		verify_files "$APP2" "$CTX" "${APP_FILES[@]}" extra.txt=extra.txt; then
		check_pass "docker pull $APP2 (layers shared with v1), files byte-identical"
	else
		cat "$WORK/pull2.log" >&2
		check_fail "docker pull $APP2 failed or content differs"
	fi
fi

# Pull by digest, into a clean image store.
dk rmi -f "$APP1" >/dev/null 2>&1 || true
BYDIG="$REG/e2e/app@$APP1_DIGEST"
if dk pull "$BYDIG" >"$WORK/pull-dig.log" 2>&1; then
	rd=$(dk inspect --format '{{join .RepoDigests " "}}' "$BYDIG" 2>/dev/null || true)
	if [[ " $rd " == *" $BYDIG "* ]] && [ "$(dk inspect --format '{{.Id}}' "$BYDIG")" = "$APP1_ID" ]; then
		check_pass "docker pull $BYDIG: RepoDigests and image ID match"
	else
		check_fail "docker pull by digest: RepoDigests '$rd' or image ID mismatch"
	fi
else
	cat "$WORK/pull-dig.log" >&2
	check_fail "docker pull $BYDIG failed"
fi

# Pull of an unknown tag must fail cleanly.
if dk pull "$REG/e2e/app:does-not-exist" >"$WORK/pull-missing.log" 2>&1; then
	check_fail "docker pull of a missing tag succeeded"
elif grep -qiE 'manifest unknown|not found' "$WORK/pull-missing.log"; then
	check_pass "docker pull of a missing tag fails with 'manifest unknown/not found'"
else
	cat "$WORK/pull-missing.log" >&2
	check_fail "docker pull of a missing tag failed with an unexpected error"
fi

# ---------------------------------------------------------------- image management (Stowage only)
if [ "${STOWAGE_TEST_REGISTRY:-stowage}" = stowage ]; then
	st() { run_bounded 180 "$STOWAGE_BIN" "$@" --registry "$STOWAGE_URL"; }
	# A write-locked tag: docker's push of another image under it is denied.
	if st lock e2e/app:v1 --write=false >"$WORK/lock.log" 2>&1 &&
		dk tag "$APP2" "$REG/e2e/app:v1" >/dev/null 2>&1; then
		if dk push "$REG/e2e/app:v1" >"$WORK/push-locked.log" 2>&1; then
			check_fail "docker push over a write-locked tag succeeded"
		elif grep -q 'write-locked' "$WORK/push-locked.log"; then
			check_pass "docker push over a write-locked tag is denied, naming the lock"
		else
			cat "$WORK/push-locked.log" >&2
			check_fail "docker push over a write-locked tag failed without naming the lock"
		fi
		st lock e2e/app:v1 --write=true >/dev/null 2>&1 || check_fail "unlock failed"
	else
		cat "$WORK/lock.log" >&2
		check_fail "stowage lock failed"
	fi
	# Delete v2 (it shares layers with v1): the dry run's bytes are what gc frees,
	# and v1 still pulls afterwards.
	pred=$(st delete --dry-run e2e/app:v2 2>&1 | sed -n 's/^would free \(.*\) in [0-9]* blobs.*/\1/p')
	if [ -n "$pred" ] && st delete e2e/app:v2 >/dev/null 2>&1 &&
		st gc --min-age 0s >"$WORK/gc.log" 2>/dev/null && grep -q "freed $pred:" "$WORK/gc.log"; then
		check_pass "stowage delete --dry-run predicted $pred and gc freed exactly that"
	else
		cat "$WORK/gc.log" >&2 2>/dev/null || true
		check_fail "delete/gc: predicted '$pred', gc said: $(cat "$WORK/gc.log" 2>/dev/null)"
	fi
	dk rmi -f "$APP1" >/dev/null 2>&1 || true
	if dk pull "$APP1" >"$WORK/pull-after-gc.log" 2>&1; then
		check_pass "docker pull $APP1 after deleting v2 and collecting garbage (shared layers kept)"
	else
		cat "$WORK/pull-after-gc.log" >&2
		check_fail "docker pull $APP1 failed after gc"
	fi
fi

# ---------------------------------------------------------------- Stowage's own image
# The Dockerfile's image (FROM scratch, UID 65532, volume, health check) is
# built from the Dockerfile's own final stage; CI cannot pull the Go toolchain
# image, so the build stage is an image imported from a rootfs that
# deploy/docker/rootfs.sh (the build stage's own script) makes on the host.
# Then: the default container (0.0.0.0:5000, auth on) in its own empty network
# turns healthy; a container on the host network (127.0.0.1 only) takes a push
# of the Stowage image itself, which is pulled back from it by digest and run.
if [ "${STOWAGE_TEST_REGISTRY:-stowage}" = stowage ]; then
	IMG=stowage:e2e
	(cd "$STOWAGE_ROOT" && sh deploy/docker/rootfs.sh "$WORK/image/out" e2e) >"$WORK/rootfs.log" 2>&1 ||
		{ cat "$WORK/rootfs.log" >&2; die "deploy/docker/rootfs.sh failed"; }
	tar -C "$WORK/image" -cf "$WORK/rootfs.tar" out
	dk import "$WORK/rootfs.tar" stowage-rootfs:e2e >"$WORK/rootfs-import.log" 2>&1 ||
		{ cat "$WORK/rootfs-import.log" >&2; die "docker import of the rootfs failed"; }
	grep -q '^# ---- image ----$' "$STOWAGE_ROOT/Dockerfile" || die "Dockerfile has no '# ---- image ----' line"
	mkdir -p "$WORK/image/ctx"
	{
		echo 'FROM stowage-rootfs:e2e AS build'
		sed -n '/^# ---- image ----$/,$p' "$STOWAGE_ROOT/Dockerfile"
	} >"$WORK/image/Dockerfile"
	if dk build -q -t "$IMG" -f "$WORK/image/Dockerfile" "$WORK/image/ctx" >"$WORK/image-build.log" 2>&1; then
		check_pass "docker build of the Dockerfile's image stage -> $IMG ($(dk image inspect --format '{{.Size}}' "$IMG") bytes)"
	else
		cat "$WORK/image-build.log" >&2
		die "docker build of the Stowage image failed"
	fi
	cfg=$(dk image inspect --format 'user={{.Config.User}} volumes={{json .Config.Volumes}} ports={{json .Config.ExposedPorts}} entrypoint={{json .Config.Entrypoint}} health={{json .Config.Healthcheck.Test}}' "$IMG")
	check_eq "$cfg" 'user=65532:65532 volumes={"/var/lib/stowage":{}} ports={"5000/tcp":{}} entrypoint=["stowage","serve"] health=["CMD","stowage","healthcheck"]' \
		"image config: non-root user, data volume, port, entrypoint, health check"

	# wait_health CONTAINER : prints the last health status after at most 60 s.
	wait_health() {
		local i st=
		for ((i = 0; i < 120; i++)); do
			st=$(dk inspect --format '{{.State.Status}}/{{.State.Health.Status}}' "$1" 2>/dev/null || echo gone)
			st=${st#running/}
			[ "$st" = starting ] || break
			sleep 0.5
		done
		echo "$st"
	}
	# The default: 0.0.0.0:5000 with access control on, in a network namespace
	# of its own (nothing outside the container can reach it).
	if dk run -d --name stowage-default --network none --health-interval 1s --health-start-period 1s "$IMG" >"$WORK/run-default.log" 2>&1; then
		st=$(wait_health stowage-default)
		dk logs stowage-default >"$WORK/default.log" 2>&1 || true
		if [ "$st" = healthy ] && grep -qE 'listening on http://(0\.0\.0\.0|\[::\]):5000' "$WORK/default.log" &&
			grep -q 'access control on' "$WORK/default.log" && grep -q 'initial-admin-password' "$WORK/default.log"; then
			check_pass "default container: healthy, on 0.0.0.0:5000 with access control on and a generated admin password"
		else
			cat "$WORK/default.log" >&2
			check_fail "default container: health '$st', or not listening on 0.0.0.0:5000 with access control on"
		fi
		dk exec stowage-default stowage healthcheck --url http://127.0.0.1:5000/v2/ >"$WORK/hc-401.log" 2>&1 && hc=0 || hc=$?
		if [ "$hc" = 1 ] && grep -q '401' "$WORK/hc-401.log"; then
			check_pass "default container: anonymous GET /v2/ is refused (401), the health check says so"
		else
			cat "$WORK/hc-401.log" >&2
			check_fail "default container: GET /v2/ without credentials did not answer 401 (exit $hc)"
		fi
		dk rm -f stowage-default >/dev/null 2>&1 || true
	else
		cat "$WORK/run-default.log" >&2
		check_fail "docker run of the default Stowage container failed"
	fi

	# TLS from a configuration file given after the image name (the server's
	# --config): the image's HEALTHCHECK, which runs `stowage healthcheck`
	# with no flag, reads the same file (PID 1's --config), asks over https
	# and trusts the server's own certificate, made for a public name.
	mkdir -p "$WORK/tlsconf"
	(cd "$WORK/tlsconf" && run_bounded 300 go run "$(go env GOROOT)/src/crypto/tls/generate_cert.go" --host registry.example.com --ecdsa-curve P256) \
		>"$WORK/gencert.log" 2>&1 || { cat "$WORK/gencert.log" >&2; die "generate_cert.go failed"; }
	printf 'tls:\n  cert_file: /etc/stowage/cert.pem\n  key_file: /etc/stowage/key.pem\n' >"$WORK/tlsconf/stowage.yaml"
	chmod 0755 "$WORK/tlsconf" && chmod 0644 "$WORK/tlsconf"/*
	if dk run -d --name stowage-tls --network none -v "$WORK/tlsconf:/etc/stowage:ro" --health-interval 1s --health-start-period 1s \
		"$IMG" --config /etc/stowage/stowage.yaml >"$WORK/run-tls.log" 2>&1; then
		st=$(wait_health stowage-tls)
		dk exec stowage-tls stowage healthcheck >"$WORK/hc-tls.log" 2>&1 || true
		if [ "$st" = healthy ] && grep -q 'healthy: GET https://127.0.0.1:5000/healthz answered 200' "$WORK/hc-tls.log"; then
			check_pass "TLS from the --config file: the image's health check asks over https and turns healthy: $(cat "$WORK/hc-tls.log")"
		else
			dk logs stowage-tls >&2 || true
			dk inspect --format '{{json .State.Health}}' stowage-tls >&2 || true
			cat "$WORK/hc-tls.log" >&2
			check_fail "TLS from the --config file: health '$st'"
		fi
		dk rm -f stowage-tls >/dev/null 2>&1 || true
	else
		cat "$WORK/run-tls.log" >&2
		check_fail "docker run of a Stowage container with TLS from a configuration file failed"
	fi

	# On the host network, loopback only, with an admin password.
	SPORT=$(pick_port)
	SREG=127.0.0.1:$SPORT
	SPW=e2e-admin-$RANDOM$RANDOM
	if dk run -d --name stowage-self --network host -e STOWAGE_ADDR="$SREG" -e STOWAGE_ADMIN_PASSWORD="$SPW" \
		-v stowage-self-data:/var/lib/stowage --health-interval 1s --health-start-period 1s "$IMG" >"$WORK/run-self.log" 2>&1; then
		st=$(wait_health stowage-self)
		if [ "$st" = healthy ]; then
			check_pass "Stowage container on $SREG (host network): health check healthy"
		else
			dk logs stowage-self >&2 || true
			dk inspect --format '{{json .State.Health}}' stowage-self >&2 || true
			dk rm -f stowage-self >/dev/null 2>&1 || true
			die "Stowage container on $SREG: health '$st'"
		fi
		if dk exec stowage-self stowage healthcheck >"$WORK/hc.log" 2>&1 && grep -q "http://$SREG/healthz answered 200" "$WORK/hc.log"; then
			check_pass "docker exec stowage healthcheck (the image's HEALTHCHECK): $(cat "$WORK/hc.log")"
		else
			cat "$WORK/hc.log" >&2
			check_fail "docker exec stowage healthcheck failed"
		fi
		SELF="$SREG/stowage/stowage:e2e"
		dk tag "$IMG" "$SELF"
		if dk push "$SELF" >"$WORK/push-self-anon.log" 2>&1; then
			check_fail "anonymous docker push into the Stowage container succeeded (access control should be on)"
		elif grep -qiE 'requested access to the resource is denied|unauthorized|authentication required' "$WORK/push-self-anon.log"; then
			check_pass "anonymous docker push into the Stowage container is refused (unauthorized)"
		else
			cat "$WORK/push-self-anon.log" >&2
			check_fail "anonymous docker push into the Stowage container failed, but not for want of credentials"
		fi
		if printf '%s' "$SPW" | dk login -u admin --password-stdin "$SREG" >"$WORK/login.log" 2>&1 &&
			SELF_DIGEST=$(push "$SELF" "$WORK/push-self.log"); then
			check_pass "docker push of the Stowage image into itself ($SELF_DIGEST)"
			IMG_ID=$(dk image inspect --format '{{.Id}}' "$IMG")
			dk rmi -f "$SELF" "$IMG" >/dev/null 2>&1 || true # untags: the container still runs it
			SELF_BYDIG="$SREG/stowage/stowage@$SELF_DIGEST"
			if dk pull "$SELF_BYDIG" >"$WORK/pull-self.log" 2>&1 &&
				[ "$(dk image inspect --format '{{.Id}}' "$SELF_BYDIG")" = "$IMG_ID" ]; then
				check_pass "docker pull $SELF_BYDIG from itself: same image ID"
			else
				cat "$WORK/pull-self.log" >&2
				check_fail "docker pull of the Stowage image by digest from itself failed or changed its ID"
			fi
			# The layers are on this engine already (the container runs them), so
			# check the bytes the registry serves too: every blob matches its digest.
			man=$(curl -s --max-time 10 -u "admin:$SPW" -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
				"http://$SREG/v2/stowage/stowage/manifests/$SELF_DIGEST")
			bad=0 n=0
			for d in $(printf '%s' "$man" | grep -o 'sha256:[0-9a-f]\{64\}' | sort -u); do
				n=$((n + 1))
				got=$(curl -s --max-time 60 -u "admin:$SPW" "http://$SREG/v2/stowage/stowage/blobs/$d" | sha256sum | cut -d' ' -f1)
				[ "sha256:$got" = "$d" ] || bad=$((bad + 1))
			done
			if [ "$n" -ge 2 ] && [ "$bad" = 0 ] && [ "sha256:$(printf '%s' "$man" | sha256sum | cut -d' ' -f1)" = "$SELF_DIGEST" ]; then
				check_pass "the Stowage image's manifest and $n blobs served by itself match their digests"
			else
				check_fail "the Stowage image served by itself: $bad of $n blobs (or the manifest) do not match their digests"
			fi
			# The pulled image runs and turns healthy.
			if dk run -d --name stowage-pulled --network none --health-interval 1s --health-start-period 1s "$SELF_BYDIG" >"$WORK/run-pulled.log" 2>&1 &&
				[ "$(wait_health stowage-pulled)" = healthy ]; then
				check_pass "a container of the image pulled by digest turns healthy"
			else
				cat "$WORK/run-pulled.log" >&2
				dk logs stowage-pulled >&2 || true
				check_fail "a container of the image pulled by digest did not turn healthy"
			fi
			dk rm -f stowage-pulled >/dev/null 2>&1 || true
		else
			cat "$WORK/login.log" "$WORK/push-self.log" >&2 2>/dev/null || true
			check_fail "docker login/push of the Stowage image into itself failed"
		fi
		dk rm -f stowage-self >/dev/null 2>&1 || true
	else
		cat "$WORK/run-self.log" >&2
		check_fail "docker run of the Stowage container on the host network failed"
	fi
fi

if ! kill -0 "$STOWAGE_PID" 2>/dev/null; then
	check_fail "the registry process died during the test"
fi

[ "${STOWAGE_E2E_GEO:-}" = 1 ] && { geo_check_converged "$WORK" || true; }
log "docker e2e: $LIB_PASSES passed, $LIB_FAILURES failed"
[ "$LIB_FAILURES" -eq 0 ]
