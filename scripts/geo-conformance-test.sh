#!/usr/bin/env bash
# The OCI distribution-spec conformance suite (the workflows and data types
# of scripts/conformance.sh) against a region of a geo-replicated registry
# while it replicates (docs/replication.md), then a check that everything
# converged to its peer:
#  - two regions, east and west, each a `stowage serve` with its own data
#    directory and SQLite database, access control on, joined in a full
#    mesh; they log in to each other as a least-privilege user (content/read,
#    content/write, replication/apply on *), made in each region before it
#    is joined (each region is started once without replication for that);
#  - a steady push load into west (an image every ~50 ms, by curl) while the
#    suite runs against east (as east's admin);
#  - afterwards: both regions hold the same catalog and the same tag →
#    digest map in every repository (the suite's and the load's), every
#    push of the load west acknowledged is in east, and east's replicator
#    to west has no lag left.
# Everything listens on 127.0.0.1 and is stopped by PID at exit.
#
#   scripts/geo-conformance-test.sh
#
# Env: CONFORMANCE_TIMEOUT (seconds, default 600), GEO_CONVERGE_TIMEOUT
# (seconds, default 60).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
lib_init

if [ "${STOWAGE_TEST_REGISTRY:-stowage}" != stowage ]; then
	log "geo-replication is Stowage's own: nothing to run against ${STOWAGE_TEST_REGISTRY}"
	exit 0
fi
command -v curl >/dev/null 2>&1 || die "curl is not installed (apt-get install curl)"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is not installed (coreutils)"

CONF_MODULE=github.com/opencontainers/distribution-spec/conformance
CONF_VERSION=v0.0.0-20260831232431-97274622c111 # as in scripts/conformance.sh
CACHE_DIR="$STOWAGE_ROOT/.cache/conformance"
CONF_BIN="$CACHE_DIR/conformance-$CONF_VERSION"
make_tmpdir WORK stowage-geo-conformance

if [ ! -x "$CONF_BIN" ]; then
	log "building the conformance suite $CONF_MODULE@$CONF_VERSION"
	json=$(cd "$WORK" && GOFLAGS=-mod=mod run_bounded 300 go mod download -json "$CONF_MODULE@$CONF_VERSION") ||
		die "go mod download $CONF_MODULE@$CONF_VERSION failed: $json"
	dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n 1)
	[ -n "$dir" ] && [ -f "$dir/main.go" ] || die "module directory not found in: $json"
	cp -R "$dir" "$WORK/src"
	chmod -R u+w "$WORK/src"
	mkdir -p "$CACHE_DIR"
	(cd "$WORK/src" && GOFLAGS="-mod=mod -buildvcs=false" run_bounded 600 go build -o "$CONF_BIN.tmp.$$" .) ||
		die "building the conformance suite failed"
	mv -f "$CONF_BIN.tmp.$$" "$CONF_BIN"
fi
build_stowage

ADMIN_PW="geo-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
REPL_USER=repl
REPL_PW="geo-repl-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
REGIONS=(east west)
declare -A PORT PID
PORT[east]=$(pick_port)
PORT[west]=$(pick_port)
while [ "${PORT[west]}" = "${PORT[east]}" ]; do PORT[west]=$(pick_port); done

# start_region NAME CONFIG : starts region NAME on its port with CONFIG and
# waits until it is ready (GET /healthz 200; /v2/ answers 401).
start_region() {
	local name=$1 cfg=$2 logf="$WORK/$1.log"
	STOWAGE_AUTH=on STOWAGE_ADMIN_PASSWORD="$ADMIN_PW" GEO_PEER_PASSWORD="$REPL_PW" \
		"$STOWAGE_BIN" serve --addr "127.0.0.1:${PORT[$name]}" --data-dir "$WORK/$name" --config "$cfg" --log-level warn >>"$logf" 2>&1 &
	PID[$name]=$!
	register_pid "${PID[$name]}" "region $name on 127.0.0.1:${PORT[$name]}"
	[ -e "$logf.registered" ] || register_log "region $name log" "$logf"
	touch "$logf.registered"
	wait_http "http://127.0.0.1:${PORT[$name]}/healthz" 200 "${STOWAGE_START_TIMEOUT:-30}" "${PID[$name]}" ||
		die "region $name did not start"
}

# api NAME METHOD PATH [JSON] : an admin request to region NAME; prints the
# body and then the status on a line of its own.
api() {
	local name=$1 method=$2 path=$3 data=${4:-}
	local -a args=(-s -u "admin:$ADMIN_PW" -X "$method" -w '\n%{http_code}' --max-time 30 -H 'Stowage-Replication: 1')
	[ -n "$data" ] && args+=(-H 'Content-Type: application/json' --data-binary "$data")
	curl "${args[@]}" "http://127.0.0.1:${PORT[$name]}$path"
}

# ---------------------------------------------------------------- bootstrap
# The peers' user, in each region before the regions are joined: a peer
# then never logs in as a user the other does not have yet (failed logins
# would trip the login limits).
for r in "${REGIONS[@]}"; do
	printf 'auth: {enabled: true}\n' >"$WORK/$r-bootstrap.yaml"
	start_region "$r" "$WORK/$r-bootstrap.yaml"
	out=$(api "$r" PUT /api/v1/auth/scope-maps/replication \
		'{"description":"a geo-replication peer","rules":[{"repository":"*","actions":["content/read","content/write","replication/apply"]}]}')
	[ "${out##*$'\n'}" = 201 ] || die "region $r: create the scope map replication: $out"
	out=$(api "$r" POST /api/v1/auth/users "{\"name\":\"$REPL_USER\",\"password\":\"$REPL_PW\",\"scopeMap\":\"replication\"}")
	[ "${out##*$'\n'}" = 201 ] || die "region $r: create the user $REPL_USER: $out"
	stop_pid "${PID[$r]}" || die "region $r did not stop"
done
for r in "${REGIONS[@]}"; do
	peer=east
	[ "$r" = east ] && peer=west
	cat >"$WORK/$r.yaml" <<EOF
auth: {enabled: true}
replication:
  region: $r
  peers:
    - {name: $peer, url: http://127.0.0.1:${PORT[$peer]}, username: $REPL_USER, password_env: GEO_PEER_PASSWORD}
EOF
	start_region "$r" "$WORK/$r.yaml"
	log "region $r: pid ${PID[$r]} on 127.0.0.1:${PORT[$r]}"
done

# ---------------------------------------------------------------- load into west
# push_image NAME REPO TAG SEED : a config and a layer, then the manifest;
# prints the manifest's digest when it was acknowledged (201).
push_image() {
	local name=$1 repo=$2 tag=$3 seed=$4 base="http://127.0.0.1:${PORT[$1]}" f d cfgd layd m
	local -a auth=(-s -o /dev/null -w '%{http_code}' --max-time 30 -u "admin:$ADMIN_PW")
	printf '{"seed":"%s"}' "$seed" >"$WORK/load.cfg"
	head -c 4096 /dev/urandom >"$WORK/load.layer"
	for f in cfg layer; do
		d="sha256:$(sha256sum "$WORK/load.$f" | cut -d' ' -f1)"
		[ "$(curl "${auth[@]}" -X POST --data-binary "@$WORK/load.$f" -H 'Content-Type: application/octet-stream' \
			"$base/v2/$repo/blobs/uploads/?digest=$d")" = 201 ] || return 1
		[ "$f" = cfg ] && cfgd=$d || layd=$d
	done
	m="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$cfgd\",\"size\":$(stat -c %s "$WORK/load.cfg")},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$layd\",\"size\":4096}]}"
	printf '%s' "$m" >"$WORK/load.manifest"
	[ "$(curl "${auth[@]}" -X PUT --data-binary "@$WORK/load.manifest" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
		"$base/v2/$repo/manifests/$tag")" = 201 ] || return 1
	echo "sha256:$(sha256sum "$WORK/load.manifest" | cut -d' ' -f1)"
}

LOAD_STOP="$WORK/load.stop"
LOAD_ACKED="$WORK/load.acked"
: >"$LOAD_ACKED"
(
	i=0
	while [ ! -e "$LOAD_STOP" ] && [ "$i" -lt 2000 ]; do
		i=$((i + 1))
		if d=$(push_image west load/app "v$i" "load-$i"); then
			echo "load/app:v$i $d" >>"$LOAD_ACKED"
		else
			echo "push load/app:v$i into west failed" >&2
		fi
		sleep 0.05
	done
) 2>"$WORK/load.err" &
LOAD_PID=$!
register_pid "$LOAD_PID" "push load into west"

# ---------------------------------------------------------------- the suite against east
RESULTS="$WORK/results"
mkdir -p "$RESULTS"
REPORT="$WORK/report.txt"
export OCI_REGISTRY="127.0.0.1:${PORT[east]}" OCI_TLS=disabled OCI_VERSION=1.1 OCI_RESULTS_DIR="$RESULTS"
export OCI_REPO1=conformance/repo1 OCI_REPO2=conformance/repo2 OCI_LOG=warn
export OCI_USERNAME=admin OCI_PASSWORD="$ADMIN_PW" OCI_CACHE_AUTH=true
# The same workflows and data types as scripts/conformance.sh.
for v in API_PING API_PULL API_PUSH API_BLOBS_ATOMIC API_BLOBS_DELETE API_BLOBS_DIGEST_HEADER \
	API_BLOBS_MOUNT_ANONYMOUS API_BLOBS_UPLOAD_CANCEL API_MANIFESTS_ATOMIC API_MANIFESTS_DELETE \
	API_MANIFESTS_DIGEST_HEADER API_MANIFESTS_TAG_PARAM API_TAGS_ATOMIC API_TAGS_DELETE API_TAGS_LIST \
	API_REFERRER DATA_IMAGE DATA_INDEX DATA_INDEX_LIST DATA_ARTIFACT DATA_SUBJECT DATA_SUBJECT_MISSING \
	DATA_ARTIFACT_LIST DATA_SUBJECT_LIST DATA_DATA_FIELD DATA_NONDISTRIBUTABLE DATA_CUSTOM_FIELDS \
	DATA_NO_LAYERS DATA_EMPTY_BLOB DATA_SHA512; do
	export "OCI_$v=true"
done
export OCI_DATA_SPARSE=false
# Blob deletes leave a tombstone read-through honours (a blob deleted in
# east is not fetched back from west), and a sha512 manifest pushed with
# ?tag= is one manifest in every region: both on (GEO_CONFORMANCE_BLOB_DELETE=false
# or GEO_CONFORMANCE_SHA512=false turn them off).
export OCI_API_BLOBS_DELETE="${GEO_CONFORMANCE_BLOB_DELETE:-true}"
export OCI_DATA_SHA512="${GEO_CONFORMANCE_SHA512:-true}"

log "running the conformance suite against east while west takes a push load and both replicate"
rc=0
T0=$(date +%s)
(cd "$WORK" && run_bounded "${CONFORMANCE_TIMEOUT:-600}" "$CONF_BIN") >"$REPORT" 2>&1 || rc=$?
log "the suite took $(($(date +%s) - T0)) s"
touch "$LOAD_STOP"
wait "$LOAD_PID" || true
sed -n '/^OCI Conformance Result/,/^  Total/p' "$REPORT"

problems=()
[ "$rc" -eq 0 ] || problems+=("the suite exited with status $rc")
grep -q '^OCI Conformance Result: Pass$' "$REPORT" || problems+=("the report does not say 'OCI Conformance Result: Pass'")
if [ ! -s "$RESULTS/results.yaml" ]; then
	problems+=("no results.yaml was written")
elif grep -Eq ':[[:space:]]+(FAIL|Error)[[:space:]]*$' "$RESULTS/results.yaml"; then
	problems+=("results.yaml lists failed APIs or data types")
fi
grep -Eq ': (FAIL|Error)$' "$REPORT" && problems+=("some tests report FAIL/Error")
NLOAD=$(wc -l <"$LOAD_ACKED")
NLOADFAIL=$(grep -c 'failed' "$WORK/load.err" || true)
log "load: $NLOAD pushes into west acknowledged, $NLOADFAIL refused"
[ "$NLOAD" -gt 0 ] || problems+=("no push of the load was acknowledged")
[ "$NLOADFAIL" -eq 0 ] || problems+=("$NLOADFAIL pushes of the load were refused: $(head -n 3 "$WORK/load.err")")

# ---------------------------------------------------------------- convergence
# state NAME : the region's catalog and every repo:tag digest (without
# read-through), one per line, sorted. A repository without manifests is left
# out (and listed in $WORK/NAME.empty): one where the suite pushed and
# mounted blobs but no manifest (conformance/repo2) stays in the catalog of
# the region where it was made, and never exists in the peer (blobs without
# a manifest are not replicated).
list_json() { # prints the strings of a JSON list field ("repositories", "tags")
	tr -d ' \n' | sed -n "s/.*\"$1\":\[\([^]]*\)\].*/\1/p" | tr ',' '\n' | sed -n 's/^"\(.*\)"$/\1/p'
}
state() {
	local name=$1 repo out counts
	local -a urls
	out=$(api "$name" GET /v2/_catalog)
	[ "${out##*$'\n'}" = 200 ] || {
		echo "catalog: $out"
		return
	}
	for repo in $(printf '%s\n' "${out%$'\n'*}" | list_json repositories | sort); do
		# manifestCount (untagged ones too) and tagCount, ACR's way.
		out=$(api "$name" GET "/acr/v1/$repo")
		counts=$(printf '%s' "${out%$'\n'*}" | tr -d ' \n' | { grep -o '"\(manifestCount\|tagCount\)":[0-9]*' || true; } | tr '\n' ' ')
		if [ "${out##*$'\n'}" = 200 ] && [ "$counts" = '"manifestCount":0 "tagCount":0 ' ]; then
			echo "$repo" >>"$WORK/$name.empty"
			continue
		fi
		echo "repository $repo: ${out##*$'\n'} $counts"
		out=$(api "$name" GET "/v2/$repo/tags/list")
		[ "${out##*$'\n'}" = 200 ] || {
			echo "repository $repo: tags/list: $out"
			continue
		}
		urls=()
		for tag in $(printf '%s\n' "${out%$'\n'*}" | list_json tags | sort); do
			urls+=("http://127.0.0.1:${PORT[$name]}/v2/$repo/manifests/$tag")
		done
		[ "${#urls[@]}" -gt 0 ] || continue
		# One curl for all the tags (one connection, one login).
		curl -s -I -u "admin:$ADMIN_PW" -H 'Stowage-Replication: 1' --max-time 60 \
			-H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
			-w 'TAG %{url_effective} %{http_code} %header{docker-content-digest}\n' "${urls[@]}" |
			sed -n "s|^TAG http://127.0.0.1:${PORT[$name]}/v2/\\(.*\\)/manifests/\\([^ ]*\\) |\\1:\\2 |p" | sort
	done
}
T0=$(date +%s)
converged=0
while [ $(($(date +%s) - T0)) -lt "${GEO_CONVERGE_TIMEOUT:-60}" ]; do
	rm -f "$WORK/east.empty" "$WORK/west.empty"
	state east >"$WORK/east.state"
	state west >"$WORK/west.state"
	if cmp -s "$WORK/east.state" "$WORK/west.state"; then
		converged=1
		break
	fi
	sleep 0.5
done
if [ "$converged" = 1 ]; then
	for r in "${REGIONS[@]}"; do
		if [ -s "$WORK/$r.empty" ]; then
			log "repositories without manifests in $r (not compared): $(sort "$WORK/$r.empty" | tr '\n' ' ')"
		fi
	done
	log "east and west converged $(($(date +%s) - T0)) s after the suite: $(grep -c '^repository' "$WORK/east.state") repositories with manifests, $(grep -vc '^repository' "$WORK/east.state") tags:"
	grep '^repository' "$WORK/east.state" >&2
else
	problems+=("east and west did not converge within ${GEO_CONVERGE_TIMEOUT:-60} s: $(diff "$WORK/east.state" "$WORK/west.state" | head -n 20 | tr '\n' ';' || true)")
fi
lost=0
while read -r ref d; do
	grep -qxF "$ref 200 $d" "$WORK/east.state" || {
		lost=$((lost + 1))
		log "acknowledged push $ref $d into west is not in east"
	}
done <"$LOAD_ACKED"
[ "$lost" -eq 0 ] || problems+=("$lost acknowledged pushes of the load are not in east")
# The suite's changes did reach west while it ran (and its deletes: the
# comparison above).
out=$(api west GET "/api/v1/events?repository=$OCI_REPO1&n=1000")
applied=$(printf '%s' "$out" | tr -d ' \n' | { grep -o '"origin":"east"' || true; } | wc -l)
log "west applied $applied changes of $OCI_REPO1 made in east by the suite"
[ "$applied" -gt 0 ] || problems+=("west applied no change of $OCI_REPO1 from east: $(printf '%s' "$out" | head -c 300)")
out=$(api east GET /api/v1/replication/status)
if printf '%s' "$out" | tr -d ' \n' | grep -q '"lagEvents":0'; then
	log "east's replicator to west: no lag left"
else
	problems+=("east's replication status after convergence: $out")
fi
for r in "${REGIONS[@]}"; do
	kill -0 "${PID[$r]}" 2>/dev/null || problems+=("region $r died during the run")
done

if [ "${#problems[@]}" -eq 0 ]; then
	log "PASS: OCI conformance against a replicating region (east, with a push load into west), and the two converged"
	exit 0
fi
awk '/: (FAIL|Error)$/ { print; p = 1; next } p && /^[ \t]+- / { print; next } { p = 0 }' "$REPORT" >&2
for p in "${problems[@]}"; do log "FAIL: $p"; done
exit 1
