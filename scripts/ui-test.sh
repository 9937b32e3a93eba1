#!/usr/bin/env bash
# The web UI in a real browser: headless Chromium (Debian's chromium,
# apt-installed when missing) driven by playwright-core (npm, pinned in
# ui/test/browser/package-lock.json, installed into ui/test/browser/node_modules)
# against the real server, with access control on, an admin, a token scoped
# to team-a/* (read only), and images pushed with crane (go install, pinned).
# The checks are ui/test/browser/test.mjs:
#
#  - every page loads with no console errors
#  - the numbers on the pages equal the API's (usage, repository and image sizes)
#  - a delete confirmed in the UI frees exactly the bytes its dry run showed,
#    after `stowage gc --min-age 0s`
#  - the token sees only its repositories and gets 403 on the others (pages
#    and actions)
#
# Screenshots of each page are kept in results/ui-screenshots (printed at the end).
# Env: CRANE_VERSION, CHROMIUM (default /usr/bin/chromium), UI_SHOTS.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
lib_init

CRANE_VERSION=${CRANE_VERSION:-v0.22.1}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
BROWSER_DIR="$STOWAGE_ROOT/ui/test/browser"
SHOTS=${UI_SHOTS:-$STOWAGE_ROOT/results/ui-screenshots}

# ---------------------------------------------------------------- tools
apt_install() { # PACKAGE...
	command -v apt-get >/dev/null 2>&1 || die "missing $*: install them (no apt-get here)"
	local -a apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0)
	log "installing $* (apt-get)"
	if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
		run_bounded 300 "${apt[@]}" update || die "apt-get update failed"
	fi
	run_bounded 900 "${apt[@]}" install --no-install-recommends "$@" ||
		{ run_bounded 300 "${apt[@]}" update && run_bounded 900 "${apt[@]}" install --no-install-recommends "$@"; } ||
		die "apt-get install $* failed"
}
[ -x "$CHROMIUM" ] || apt_install chromium
[ -x "$CHROMIUM" ] || die "$CHROMIUM is missing after installing chromium"
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
	die "node $(node --version) is too old for playwright-core (needs 20 or newer)"

want_pw=$(node -e 'console.log(require(process.argv[1]).packages["node_modules/playwright-core"].version)' "$BROWSER_DIR/package-lock.json")
have_pw=$(node -e 'try{console.log(require(process.argv[1]).version)}catch(e){console.log("")}' "$BROWSER_DIR/node_modules/playwright-core/package.json")
if [ "$have_pw" != "$want_pw" ]; then
	log "installing playwright-core $want_pw (npm ci, from package-lock.json)"
	(cd "$BROWSER_DIR" && run_bounded 300 npm ci --no-audit --no-fund --ignore-scripts) || die "npm ci in $BROWSER_DIR failed"
fi

BIN="$STOWAGE_ROOT/.cache/bin"
if ! [ -x "$BIN/crane" ] || [ "$(cat "$BIN/crane.version" 2>/dev/null)" != "$CRANE_VERSION" ]; then
	log "installing crane $CRANE_VERSION into $BIN (go install)"
	mkdir -p "$BIN"
	(cd / && GOBIN="$BIN" GOFLAGS=-buildvcs=false run_bounded 900 go install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION") ||
		die "go install crane failed"
	echo "$CRANE_VERSION" >"$BIN/crane.version"
fi
CRANE="$BIN/crane"

make_tmpdir WORK stowage-ui-test
build_stowage

# ---------------------------------------------------------------- server
ADMIN_PW="admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
cat >"$WORK/config.yml" <<YML
auth:
  enabled: true
YML
STOWAGE_READY_STATUS=401 STOWAGE_ADMIN_PASSWORD=$ADMIN_PW start_stowage "$WORK/data" --config "$WORK/config.yml"
REG=$STOWAGE_ADDR
st() { run_bounded 60 env STOWAGE_USERNAME=admin STOWAGE_PASSWORD="$ADMIN_PW" "$STOWAGE_BIN" "$@" --registry "$STOWAGE_URL"; }

st scope-map create team-a-read --rule 'team-a/*=content/read,metadata/read' >/dev/null || die "scope-map create failed"
st token create ta --scope-map team-a-read >"$WORK/ta.txt" || die "token create failed"
TA_PW=$(sed -n 's/^password1: //p' "$WORK/ta.txt")
[ -n "$TA_PW" ] || die "no password1 in: $(cat "$WORK/ta.txt")"

# Images: a base layer shared by team-a/app and team-b/web (dedup), layers
# of their own, two tags of team-a/app, and team-a/tool alone.
mkdir -p "$WORK/crane"
crane() { run_bounded 120 env DOCKER_CONFIG="$WORK/crane" "$CRANE" --insecure "$@"; }
crane auth login "$REG" -u admin -p "$ADMIN_PW" >/dev/null 2>&1 || die "crane auth login failed"
layer() { # NAME BYTES -> $WORK/NAME.tar holding NAME of random bytes
	mkdir -p "$WORK/l-$1"
	head -c "$2" /dev/urandom >"$WORK/l-$1/$1"
	tar -C "$WORK/l-$1" -cf "$WORK/$1.tar" "$1"
}
layer base 300000
layer app1 120000
layer app2 80000
layer web 200000
layer tool 50000
push() { # REF LAYER...
	local ref=$1 args=()
	shift
	for l in "$@"; do args+=(-f "$WORK/$l.tar"); done
	crane append "${args[@]}" -t "$REG/$ref" >"$WORK/push.log" 2>&1 || { cat "$WORK/push.log" >&2; die "crane push of $ref failed"; }
}
push team-a/app:1 base app1
push team-a/app:2 base app2
push team-b/web:1 base web
push team-a/tool:1 tool
log "pushed team-a/app:1, team-a/app:2, team-b/web:1, team-a/tool:1 with crane"
# The size order of the repository list is that of the last usage recording
# (hourly, and at start): a restart records the pushed images.
stop_stowage
STOWAGE_READY_STATUS=401 start_stowage "$WORK/data" --config "$WORK/config.yml"

# ---------------------------------------------------------------- browser
rm -rf "$SHOTS"
mkdir -p "$SHOTS"
log "running the browser checks (chromium $("$CHROMIUM" --version 2>/dev/null | awk '{print $2}'), playwright-core $want_pw)"
if (cd "$BROWSER_DIR" && run_bounded 300 env STOWAGE_URL="$STOWAGE_URL" ADMIN_PASSWORD="$ADMIN_PW" TOKEN_NAME=ta TOKEN_PASSWORD="$TA_PW" \
	STOWAGE_BIN="$STOWAGE_BIN" SHOTS="$SHOTS" CHROMIUM="$CHROMIUM" DELETE_REPO=team-a/app node test.mjs); then
	check_pass "browser checks"
else
	check_fail "browser checks (see the FAIL lines above)"
fi
# The UI's changes are audit lines, as the management API's are.
grep -q 'audit=ui.request actor="user admin" request="POST /ui/delete" what=image target=team-a/app@sha256:.* status=303' "$STOWAGE_LOG" &&
	check_pass "the UI's delete is an audit line (actor, target, status)" || check_fail "no audit line for the UI's delete in $STOWAGE_LOG"
grep -q 'audit=ui.request actor="token ta" request="POST /ui/delete" .* status=403' "$STOWAGE_LOG" &&
	check_pass "the token's refused delete is an audit line with status 403" || check_fail "no audit line for the token's refused delete"
log "screenshots: $SHOTS"
ls -1 "$SHOTS" >&2
stop_stowage

log "$LIB_PASSES checks passed, $LIB_FAILURES failed"
[ "$LIB_FAILURES" -eq 0 ]
