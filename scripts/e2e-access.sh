#!/usr/bin/env bash
# Access control, storage limits and request limits against the real server,
# with real clients: the Docker engine (private dockerd, as in
# e2e-docker.sh), skopeo and podman (Debian), crane, oras and regctl (go
# install, pinned, into .cache/bin). Every check runs; the script fails if any failed.
#
#  - a token scoped to team-a/* with read only (scope map content/read,
#    metadata/read) can pull team-a/x (docker, podman, skopeo, crane, oras, regctl), cannot
#    push it, cannot see or pull team-b/y, and its catalog shows only team-a/*
#  - a disabled token and an expired token are refused
#  - a docker push over a repository quota, and one over the registry's
#    storage limit, are refused with DENIED naming the limit; usage against
#    the limits is unchanged
#  - a burst over the per-identity read limit gets 429 TOOMANYREQUESTS with
#    Retry-After, and succeeds after waiting that long
#  - serve on a non-loopback address without auth is refused
#
# Env: CRANE_VERSION, ORAS_VERSION, REGCTL_VERSION (go install versions), DOCKER_CLI.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
lib_init

CRANE_VERSION=${CRANE_VERSION:-v0.22.1}
ORAS_VERSION=${ORAS_VERSION:-v1.3.6}
REGCTL_VERSION=${REGCTL_VERSION:-v0.11.1}
command -v curl >/dev/null 2>&1 || die "curl is not installed (apt-get install curl)"
command -v skopeo >/dev/null 2>&1 || die "skopeo is not installed (apt-get install skopeo)"
command -v podman >/dev/null 2>&1 || die "podman is not installed (apt-get install podman)"

# ---------------------------------------------------------------- tools
BIN="$STOWAGE_ROOT/.cache/bin"
go_tool() { # NAME PACKAGE VERSION
	local name=$1 pkg=$2 ver=$3
	if [ -x "$BIN/$name" ] && [ "$(cat "$BIN/$name.version" 2>/dev/null)" = "$ver" ]; then
		return 0
	fi
	log "installing $name $ver into $BIN (go install)"
	mkdir -p "$BIN"
	(cd / && GOBIN="$BIN" GOFLAGS=-buildvcs=false run_bounded 900 go install "$pkg@$ver") || die "go install $pkg@$ver failed"
	echo "$ver" >"$BIN/$name.version"
}
go_tool crane github.com/google/go-containerregistry/cmd/crane "$CRANE_VERSION"
go_tool oras oras.land/oras/cmd/oras "$ORAS_VERSION"
go_tool regctl github.com/regclient/regclient/cmd/regctl "$REGCTL_VERSION"
CRANE="$BIN/crane"
ORAS="$BIN/oras"
REGCTL="$BIN/regctl"

make_tmpdir WORK stowage-e2e-access
build_stowage

# ---------------------------------------------------------------- refusal
# Refused before it listens: nothing is bound to 0.0.0.0.
if out=$(run_bounded 30 "$STOWAGE_BIN" serve --addr 0.0.0.0:0 --data-dir "$WORK/open" 2>&1); then
	check_fail "serve --addr 0.0.0.0:0 without auth started; it must refuse"
elif grep -q "refusing to listen on 0.0.0.0:0 without authentication" <<<"$out" && grep -q -- "--insecure-open-registry" <<<"$out"; then
	check_pass "serve on a non-loopback address without auth is refused, naming the way out"
else
	check_fail "serve --addr 0.0.0.0:0 failed for another reason: $out"
fi

# ---------------------------------------------------------------- server A
ADMIN_PW="admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
cat >"$WORK/a.yml" <<EOF
auth:
  enabled: true
tier: basic
limits:
  storage: 6MiB
EOF
STOWAGE_READY_STATUS=401 STOWAGE_ADMIN_PASSWORD=$ADMIN_PW start_stowage "$WORK/a" --config "$WORK/a.yml"
REG=$STOWAGE_ADDR
LOG_A=$STOWAGE_LOG
grep -q "access control on" "$LOG_A" && check_pass "startup says access control is on" || check_fail "startup line about access control missing"

st() { run_bounded 60 env STOWAGE_USERNAME=admin STOWAGE_PASSWORD="$ADMIN_PW" "$STOWAGE_BIN" "$@" --registry "$STOWAGE_URL"; }
crane_as() { # CONFIG_DIR ARGS...
	local cfg=$1
	shift
	run_bounded 120 env DOCKER_CONFIG="$cfg" "$CRANE" --insecure "$@"
}
layer() { # FILE BYTES -> a tar holding FILE of random bytes
	local d="$WORK/layer-$1"
	mkdir -p "$d"
	head -c "$2" /dev/urandom >"$d/$1"
	tar -C "$d" -cf "$WORK/$1.tar" "$1"
}

# Admin pushes the test repositories with crane.
mkdir -p "$WORK/crane-admin" "$WORK/crane-token"
crane_as "$WORK/crane-admin" auth login "$REG" -u admin -p "$ADMIN_PW" >/dev/null 2>&1 || die "crane auth login as admin failed"
for img in team-a/x team-a/z team-b/y; do
	layer "${img//\//-}" 40000
	crane_as "$WORK/crane-admin" append -f "$WORK/${img//\//-}.tar" -t "$REG/$img:1" >"$WORK/push.log" 2>&1 ||
		{ cat "$WORK/push.log" >&2; die "crane push of $img as admin failed"; }
done
check_pass "admin pushed team-a/x, team-a/z, team-b/y with crane"
if crane_as "$WORK/crane-token" manifest "$REG/team-a/x:1" >/dev/null 2>&1; then
	check_fail "an anonymous caller read team-a/x:1"
else
	check_pass "anonymous callers cannot pull (anonymous pull is off)"
fi

st scope-map create team-a-read --rule 'team-a/*=content/read,metadata/read' >/dev/null || die "scope-map create failed"
st token create ta --scope-map team-a-read >"$WORK/ta.txt" || die "token create failed"
TA_PW=$(sed -n 's/^password1: //p' "$WORK/ta.txt")
[ -n "$TA_PW" ] || die "no password1 in: $(cat "$WORK/ta.txt")"
st token list | grep -q "^ta  *team-a-read  *enabled" && check_pass "token list shows ta (team-a-read, enabled)" || check_fail "token list: $(st token list)"

# ---------------------------------------------------------------- docker
start_dockerd "$WORK/docker"
if printf '%s\n' "$TA_PW" | dk login "$REG" -u ta --password-stdin >"$WORK/login.log" 2>&1; then
	check_pass "docker login with the token"
else
	check_fail "docker login with the token: $(cat "$WORK/login.log")"
fi
if dk pull "$REG/team-a/x:1" >"$WORK/pull.log" 2>&1; then
	check_pass "docker pull team-a/x:1 with the read-only token"
else
	check_fail "docker pull team-a/x:1: $(cat "$WORK/pull.log")"
fi
dk tag "$REG/team-a/x:1" "$REG/team-a/x:pushed-by-token" >/dev/null
if dk push "$REG/team-a/x:pushed-by-token" >"$WORK/push.log" 2>&1; then
	check_fail "docker push with a read-only token succeeded"
elif grep -qiE "denied|unauthorized|insufficient_scope" "$WORK/push.log"; then
	check_pass "docker push with the read-only token is refused ($(grep -oiE 'denied|unauthorized|insufficient_scope' "$WORK/push.log" | head -n 1))"
else
	check_fail "docker push failed without saying why: $(cat "$WORK/push.log")"
fi
crane_as "$WORK/crane-admin" manifest "$REG/team-a/x:pushed-by-token" >/dev/null 2>&1 &&
	check_fail "the refused push left a tag behind" || check_pass "the refused push left no tag"
if dk pull "$REG/team-b/y:1" >"$WORK/pull.log" 2>&1; then
	check_fail "docker pull team-b/y:1 with a team-a token succeeded"
else
	check_pass "docker pull team-b/y:1 with the team-a token is refused"
fi

# ---------------------------------------------------------------- skopeo
mkdir -p "$WORK/skopeo-dc" # not dockerd's client config, which holds docker login's identity token
SK=(run_bounded 120 env DOCKER_CONFIG="$WORK/skopeo-dc" skopeo --registries-conf /dev/null)
AUTHFILE="$WORK/skopeo-auth.json"
if "${SK[@]}" login --tls-verify=false --authfile "$AUTHFILE" -u ta -p "$TA_PW" "$REG" >"$WORK/sk.log" 2>&1; then
	check_pass "skopeo login with the token"
else
	check_fail "skopeo login: $(cat "$WORK/sk.log")"
fi
SKA=(--authfile "$AUTHFILE")
"${SK[@]}" inspect --tls-verify=false "${SKA[@]}" "docker://$REG/team-a/x:1" >/dev/null 2>"$WORK/sk.log" &&
	check_pass "skopeo inspect team-a/x:1 with the token" || check_fail "skopeo inspect team-a/x:1: $(cat "$WORK/sk.log")"
"${SK[@]}" list-tags --tls-verify=false "${SKA[@]}" "docker://$REG/team-b/y" >/dev/null 2>&1 &&
	check_fail "skopeo list-tags team-b/y with a team-a token succeeded" || check_pass "skopeo list-tags team-b/y is refused"
if "${SK[@]}" copy --src-tls-verify=false --dest-tls-verify=false "${SKA[@]}" "docker://$REG/team-a/x:1" "docker://$REG/team-a/x:copied" >"$WORK/sk.log" 2>&1; then
	check_fail "skopeo copy into team-a with a read-only token succeeded"
else
	check_pass "skopeo copy into team-a with the read-only token is refused"
fi

# ---------------------------------------------------------------- podman
# Its own storage (vfs), run root and auth file under WORK.
PM=(run_bounded 120 env DOCKER_CONFIG="$WORK/podman" podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" --storage-driver vfs
	--cgroup-manager cgroupfs --events-backend none)
PMA=(--tls-verify=false --authfile "$WORK/podman/auth.json")
mkdir -p "$WORK/podman"
if "${PM[@]}" login "${PMA[@]}" -u ta -p "$TA_PW" "$REG" >"$WORK/pm.log" 2>&1; then
	check_pass "podman login with the token"
else
	check_fail "podman login: $(cat "$WORK/pm.log")"
fi
"${PM[@]}" pull "${PMA[@]}" "$REG/team-a/x:1" >"$WORK/pm.log" 2>&1 &&
	check_pass "podman pull team-a/x:1 with the token" || check_fail "podman pull team-a/x:1: $(cat "$WORK/pm.log")"
"${PM[@]}" tag "$REG/team-a/x:1" "$REG/team-a/x:by-podman" >/dev/null 2>&1
"${PM[@]}" push "${PMA[@]}" "$REG/team-a/x:by-podman" >"$WORK/pm.log" 2>&1 &&
	check_fail "podman push with a read-only token succeeded" || check_pass "podman push with the read-only token is refused"
"${PM[@]}" pull "${PMA[@]}" "$REG/team-b/y:1" >/dev/null 2>&1 &&
	check_fail "podman pulled team-b/y:1 with a team-a token" || check_pass "podman pull team-b/y:1 is refused"

# ---------------------------------------------------------------- crane, oras
crane_as "$WORK/crane-token" auth login "$REG" -u ta -p "$TA_PW" >/dev/null 2>&1 || check_fail "crane auth login with the token"
if catalog=$(crane_as "$WORK/crane-token" catalog "$REG" 2>"$WORK/cr.log"); then
	check_eq "$(echo "$catalog" | sort | tr '\n' ' ')" "team-a/x team-a/z " "crane catalog with the token lists only team-a/*"
else
	check_fail "crane catalog with the token: $(cat "$WORK/cr.log")"
fi
check_eq "$(crane_as "$WORK/crane-admin" catalog "$REG" 2>/dev/null | sort | tr '\n' ' ')" "team-a/x team-a/z team-b/y " "the admin's catalog lists every repository"
crane_as "$WORK/crane-token" manifest "$REG/team-b/y:1" >/dev/null 2>&1 &&
	check_fail "crane manifest team-b/y:1 with the token succeeded" || check_pass "crane manifest team-b/y:1 with the token is refused"
crane_as "$WORK/crane-token" manifest "$REG/team-a/z:1" >/dev/null 2>&1 &&
	check_pass "crane manifest team-a/z:1 with the token" || check_fail "crane manifest team-a/z:1 with the token"
ORASC=(run_bounded 120 env DOCKER_CONFIG="$WORK/oras" "$ORAS")
mkdir -p "$WORK/oras"
if "${ORASC[@]}" login --plain-http --registry-config "$WORK/oras/config.json" -u ta -p "$TA_PW" "$REG" >"$WORK/oras.log" 2>&1; then
	check_pass "oras login with the token"
else
	check_fail "oras login: $(cat "$WORK/oras.log")"
fi
"${ORASC[@]}" manifest fetch --plain-http --registry-config "$WORK/oras/config.json" "$REG/team-a/x:1" >/dev/null 2>"$WORK/oras.log" &&
	check_pass "oras manifest fetch team-a/x:1 with the token" || check_fail "oras manifest fetch: $(cat "$WORK/oras.log")"
"${ORASC[@]}" manifest fetch --plain-http --registry-config "$WORK/oras/config.json" "$REG/team-b/y:1" >/dev/null 2>&1 &&
	check_fail "oras fetched team-b/y:1 with a team-a token" || check_pass "oras manifest fetch team-b/y:1 is refused"

RC=(run_bounded 120 env REGCTL_CONFIG="$WORK/regctl.json" "$REGCTL")
"${RC[@]}" registry set --tls disabled "$REG" >/dev/null 2>&1 || true # its ping is refused: not logged in yet
if "${RC[@]}" registry login -u ta -p "$TA_PW" "$REG" >"$WORK/regctl.log" 2>&1; then
	check_pass "regctl registry login with the token"
else
	check_fail "regctl registry login: $(cat "$WORK/regctl.log")"
fi
check_eq "$("${RC[@]}" tag ls "$REG/team-a/x" 2>"$WORK/regctl.log")" "1" "regctl tag ls team-a/x with the token"
check_eq "$("${RC[@]}" repo ls "$REG" 2>"$WORK/regctl.log" | sort | tr '\n' ' ')" "team-a/x team-a/z " "regctl repo ls with the token lists only team-a/*"
"${RC[@]}" tag ls "$REG/team-b/y" >/dev/null 2>&1 &&
	check_fail "regctl listed team-b/y's tags with a team-a token" || check_pass "regctl tag ls team-b/y is refused"

# ---------------------------------------------------------------- disabled, expired
st token disable ta >/dev/null || check_fail "token disable"
dk rmi "$REG/team-a/x:1" >/dev/null 2>&1 || true
dk pull "$REG/team-a/x:1" >/dev/null 2>&1 && check_fail "docker pull with a disabled token succeeded" || check_pass "docker pull with the disabled token is refused"
"${SK[@]}" inspect --tls-verify=false "${SKA[@]}" "docker://$REG/team-a/x:1" >/dev/null 2>&1 &&
	check_fail "skopeo inspect with a disabled token succeeded" || check_pass "skopeo inspect with the disabled token is refused"
crane_as "$WORK/crane-token" manifest "$REG/team-a/x:1" >/dev/null 2>&1 &&
	check_fail "crane with a disabled token succeeded" || check_pass "crane with the disabled token is refused"
st token enable ta >/dev/null
crane_as "$WORK/crane-token" manifest "$REG/team-a/x:1" >/dev/null 2>&1 &&
	check_pass "enabled again, the token works" || check_fail "the re-enabled token does not work"

st token create short --scope-map team-a-read --expiry 3s >"$WORK/short.txt" || die "token create short failed"
SHORT_PW=$(sed -n 's/^password1: //p' "$WORK/short.txt")
sleep 4
if printf '%s\n' "$SHORT_PW" | dk login "$REG" -u short --password-stdin >"$WORK/login.log" 2>&1; then
	check_fail "docker login with an expired token succeeded"
else
	check_pass "docker login with the expired token is refused"
fi
mkdir -p "$WORK/crane-short"
crane_as "$WORK/crane-short" auth login "$REG" -u short -p "$SHORT_PW" >/dev/null 2>&1 || true
crane_as "$WORK/crane-short" manifest "$REG/team-a/x:1" >/dev/null 2>&1 &&
	check_fail "crane with an expired token succeeded" || check_pass "crane with the expired token is refused"

# ---------------------------------------------------------------- storage limits
# usage_json: the limits and what they hold, from the management API.
quota_used() { # jq-less: the usedBytes of "registry" or of a repository
	curl -s -u "admin:$ADMIN_PW" "$STOWAGE_URL/api/v1/quotas" | python3 -c '
import json,sys
q=json.load(sys.stdin); want=sys.argv[1]
if want=="registry": print(q["registry"]["usedBytes"])
else: print(next((r["usedBytes"] for r in q["repositories"] if r["repository"]==want), "none"))' "$1"
}
printf '%s\n' "$ADMIN_PW" | dk login "$REG" -u admin --password-stdin >/dev/null 2>&1 || die "docker login as admin failed"
CTX="$WORK/ctx"
mkdir -p "$CTX"
head -c 300000 /dev/urandom >"$CTX/quota.bin"
printf 'FROM scratch\nCOPY quota.bin /quota.bin\n' >"$CTX/Dockerfile.quota"
dk build -q -t "$REG/team-c/q:1" -f "$CTX/Dockerfile.quota" "$CTX" >/dev/null 2>&1 || die "docker build failed"
st quota set team-c/q 200KB >/dev/null || die "quota set failed"
REG_BEFORE=$(quota_used registry)
REPO_BEFORE=$(quota_used team-c/q)
if dk push "$REG/team-c/q:1" >"$WORK/push.log" 2>&1; then
	check_fail "docker push over the repository quota succeeded"
elif grep -q "quota of repository team-c/q" "$WORK/push.log"; then
	check_pass "docker push over the team-c/q quota is refused: $(grep -o 'denied: [^;]*' "$WORK/push.log" | head -n 1)"
else
	check_fail "docker push over quota failed without naming the quota: $(cat "$WORK/push.log")"
fi
check_eq "$(quota_used team-c/q)" "$REPO_BEFORE" "team-c/q usage unchanged by the refused push ($REPO_BEFORE bytes)"
check_eq "$(quota_used registry)" "$REG_BEFORE" "registry usage unchanged by the refused push ($REG_BEFORE bytes)"
crane_as "$WORK/crane-admin" manifest "$REG/team-c/q:1" >/dev/null 2>&1 &&
	check_fail "the refused push left a manifest" || check_pass "the refused push left no manifest"

head -c 7000000 /dev/urandom >"$CTX/big.bin"
printf 'FROM scratch\nCOPY big.bin /big.bin\n' >"$CTX/Dockerfile.big"
dk build -q -t "$REG/team-d/big:1" -f "$CTX/Dockerfile.big" "$CTX" >/dev/null 2>&1 || die "docker build failed"
REG_BEFORE=$(quota_used registry)
if dk push "$REG/team-d/big:1" >"$WORK/push.log" 2>&1; then
	check_fail "docker push over the registry's storage limit succeeded"
elif grep -q "storage limit is 6 MiB" "$WORK/push.log"; then
	check_pass "docker push over the 6 MiB storage limit is refused, naming it"
else
	check_fail "docker push over the storage limit failed without naming it: $(cat "$WORK/push.log")"
fi
check_eq "$(quota_used registry)" "$REG_BEFORE" "registry usage unchanged by the refused push"
st quota >"$WORK/quota.txt" && grep -q "(registry)" "$WORK/quota.txt" && grep -q "team-c/q" "$WORK/quota.txt" &&
	check_pass "stowage quota shows the registry's limit and team-c/q" || check_fail "stowage quota: $(cat "$WORK/quota.txt")"

grep -q 'audit=token.disable actor="user admin" target=ta' "$LOG_A" &&
	check_pass "audit log: token.disable by admin" || check_fail "no audit line for token.disable"
grep -q 'audit=auth.failure name=short .*reason=.*expired' "$LOG_A" && check_pass "audit log: the expired token's login is logged as auth.failure" || check_fail "no auth.failure audit line for the expired token"
stop_stowage

# ---------------------------------------------------------------- request limits
cat >"$WORK/b.yml" <<EOF
limits:
  reads: {registry: 1000, identity: 20}
EOF
start_stowage "$WORK/b" --config "$WORK/b.yml"
n200=0 n429=0 retry=""
for i in $(seq 1 40); do
	code=$(curl -s -o /dev/null -D "$WORK/h.txt" -w '%{http_code}' --max-time 5 "$STOWAGE_URL/v2/")
	case $code in
	200) n200=$((n200 + 1)) ;;
	429)
		n429=$((n429 + 1))
		retry=$(tr -d '\r' <"$WORK/h.txt" | sed -n 's/^[Rr]etry-[Aa]fter: //p')
		;;
	esac
done
if [ "$n429" -gt 0 ] && [ "$n200" -ge 18 ] && [ "$n200" -le 22 ] && [ -n "$retry" ]; then
	check_pass "a burst of 40 reads: $n200 answered, $n429 got 429 with Retry-After: $retry"
else
	check_fail "burst of 40 reads against 20/min: $n200 x 200, $n429 x 429, Retry-After '$retry'"
fi
# The burst takes seconds on a loaded machine, so a token may have come back
# meanwhile: read until the next 429 (bounded), and wait what that one says.
code=200 body="" retry=""
for i in $(seq 1 10); do
	code=$(curl -s -o "$WORK/b.txt" -D "$WORK/h.txt" -w '%{http_code}' --max-time 5 "$STOWAGE_URL/v2/_catalog")
	[ "$code" = 429 ] && break
done
body=$(cat "$WORK/b.txt")
retry=$(tr -d '\r' <"$WORK/h.txt" | sed -n 's/^[Rr]etry-[Aa]fter: //p')
grep -q '"TOOMANYREQUESTS"' <<<"$body" && check_pass "the 429 body carries TOOMANYREQUESTS" || check_fail "429 body ($code): $body"
if [ -n "$retry" ] && [ "$retry" -le 10 ]; then
	sleep "$retry"
	check_eq "$(http_status "$STOWAGE_URL/v2/")" 200 "after waiting Retry-After ($retry s) the read succeeds"
else
	check_fail "the 429 carries no usable Retry-After: '$retry'"
fi
stop_stowage

log "$LIB_PASSES checks passed, $LIB_FAILURES failed"
[ "$LIB_FAILURES" -eq 0 ]
