#!/usr/bin/env bash
# Stowage against registries no one here wrote (issue 17): Debian's
# docker-registry (CNCF distribution 2.8) with htpasswd auth, and a second
# Stowage with access control (the Docker token flow), as the source of
# `stowage import --from` and the upstream of pull-through cache rules.
#
#  - go test ./e2e -run 'TestImportFrom|TestPullThrough' (the real binary):
#    import of a two-platform index + SBOM from distribution (referrers
#    through the tag schema) and from a token-auth Stowage; pull-through
#    from distribution behind a counting proxy: 10 concurrent pulls of an
#    uncached image fetch each blob once, crane pulls cold and warm, and
#    with the upstream stopped the image still pulls
#  - docker: an image pushed to distribution is pulled through a cache rule
#    by a private dockerd (as in e2e-docker.sh), then, with distribution
#    stopped and the local image removed, pulled again
#
# Installs docker-registry and docker.io (apt-get) when missing, and crane
# (go install, pinned) into .cache/bin. Env: CRANE_VERSION, DOCKER_CLI.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
lib_init

CRANE_VERSION=${CRANE_VERSION:-v0.22.1}
# Stowage is what is tested here (distribution is the other side), also when
# scripts/test.sh runs the suite against distribution.
export STOWAGE_TEST_REGISTRY=stowage
apt_install() { # PACKAGES...
	command -v apt-get >/dev/null 2>&1 || die "missing $*, and no apt-get to install them"
	local -a apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0)
	log "installing: $*"
	if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
		run_bounded 300 "${apt[@]}" update || die "apt-get update failed"
	fi
	if ! run_bounded 600 "${apt[@]}" install --no-install-recommends "$@"; then
		run_bounded 300 "${apt[@]}" update || die "apt-get update failed"
		run_bounded 600 "${apt[@]}" install --no-install-recommends "$@" || die "apt-get install $* failed"
	fi
}
pkgs=()
[ -x /usr/bin/docker-registry ] || pkgs+=(docker-registry)
command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || pkgs+=(docker.io)
command -v curl >/dev/null 2>&1 || pkgs+=(curl)
[ "${#pkgs[@]}" -eq 0 ] || apt_install "${pkgs[@]}"

BIN="$STOWAGE_ROOT/.cache/bin"
if ! [ -x "$BIN/crane" ] || [ "$(cat "$BIN/crane.version" 2>/dev/null)" != "$CRANE_VERSION" ]; then
	log "installing crane $CRANE_VERSION into $BIN (go install)"
	mkdir -p "$BIN"
	(cd / && GOBIN="$BIN" GOFLAGS=-buildvcs=false run_bounded 900 go install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION") ||
		die "go install crane failed"
	echo "$CRANE_VERSION" >"$BIN/crane.version"
fi

# ---------------------------------------------------------------- go tests
log "go test ./e2e -run 'TestImportFrom|TestPullThrough'"
(cd "$STOWAGE_ROOT" && STOWAGE_REQUIRE_E2E=1 STOWAGE_REQUIRE_DOCKER_REGISTRY=1 STOWAGE_REQUIRE_CRANE=1 STOWAGE_CRANE="$BIN/crane" \
	run_bounded 300 go test -count=1 -timeout 4m -run 'TestImportFrom|TestPullThrough' ./e2e/) || die "go test ./e2e (remote registries) failed"

# ---------------------------------------------------------------- docker
make_tmpdir WORK stowage-remote-test
UPPORT=$(pick_port)
mkdir -p "$WORK/up"
cat >"$WORK/up/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/up/data
http:
  addr: 127.0.0.1:$UPPORT
EOF
docker-registry serve "$WORK/up/config.yml" >"$WORK/up/log" 2>&1 &
UPPID=$!
register_pid "$UPPID" "docker-registry (upstream)"
register_log "docker-registry log" "$WORK/up/log"
wait_http "http://127.0.0.1:$UPPORT/v2/" 200 20 "$UPPID" || die "docker-registry did not start"
UP=127.0.0.1:$UPPORT

start_stowage "$WORK/data"
REG=$STOWAGE_ADDR
"$STOWAGE_BIN" cache-rule create hub --registry "$STOWAGE_URL" --source 'hub/*' --upstream "$UP/library/*" --plain-http --tag-ttl 1s >/dev/null ||
	die "cache-rule create failed"
start_dockerd "$WORK/docker"

mkdir -p "$WORK/img/data"
printf 'pulled through the cache\n' >"$WORK/img/hello.txt"
head -c 1048576 /dev/urandom >"$WORK/img/data/random.bin"
tar -C "$WORK/img" -cf "$WORK/img.tar" .
dk import "$WORK/img.tar" "$UP/library/cached:v1" >/dev/null || die "docker import failed"
dk push "$UP/library/cached:v1" >"$WORK/push.log" 2>&1 || { cat "$WORK/push.log" >&2; die "docker push to docker-registry failed"; }
WANT=$(dk image inspect --format '{{.Id}}' "$UP/library/cached:v1")
dk rmi "$UP/library/cached:v1" >/dev/null

if dk pull "$REG/hub/cached:v1" >"$WORK/pull1.log" 2>&1 && [ "$(dk image inspect --format '{{.Id}}' "$REG/hub/cached:v1")" = "$WANT" ]; then
	check_pass "docker pull through the cache rule gives the upstream's image"
else
	cat "$WORK/pull1.log" >&2
	check_fail "docker pull through the cache rule"
fi
# The background copy stores the tag; then the upstream goes away.
for _ in $(seq 1 50); do
	curl -fsS "$STOWAGE_URL/v2/hub/cached/tags/list" 2>/dev/null | grep -q '"v1"' && break
	sleep 0.2
done
stop_pid "$UPPID"
dk rmi "$REG/hub/cached:v1" >/dev/null
sleep 1.1 # past the tag TTL: the upstream would be asked, and it does not answer
if dk pull "$REG/hub/cached:v1" >"$WORK/pull2.log" 2>&1 && [ "$(dk image inspect --format '{{.Id}}' "$REG/hub/cached:v1")" = "$WANT" ]; then
	check_pass "with the upstream stopped, docker pulls the cached image"
else
	cat "$WORK/pull2.log" >&2
	check_fail "docker pull with the upstream stopped"
fi
if grep -q "serving a cached tag" "$STOWAGE_LOG"; then
	check_pass "the stale tag is logged"
else
	check_fail "the stale tag was not logged"
fi

log "remote registries: $LIB_PASSES passed, $LIB_FAILURES failed"
[ "$LIB_FAILURES" -eq 0 ]
