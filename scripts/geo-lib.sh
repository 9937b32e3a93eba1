# shellcheck shell=bash
# Helpers to run a test script's registry as a region of a geo-replicated
# pair (docs/replication.md): the registry under test is region east, a
# second `stowage serve` (region west, its own data directory and SQLite
# database) its peer, both without access control (loopback only). Source it
# after lib.sh:
#
#   geo_config "$WORK"            # sets GEO_SERVE_ARGS (add them to start_stowage)
#   start_stowage "$WORK/data" "${GEO_SERVE_ARGS[@]}"
#   geo_start_peer "$WORK"        # starts west, joined to $STOWAGE_ADDR
#   ...
#   geo_check_converged "$WORK"   # check_pass/check_fail: same manifests and tags in both

# geo_config DIR : picks west's port and writes east's configuration.
geo_config() {
	GEO_WEST_PORT=$(pick_port)
	printf 'replication:\n  region: east\n  peers:\n    - {name: west, url: http://127.0.0.1:%s}\n' "$GEO_WEST_PORT" >"$1/geo-east.yaml"
	GEO_SERVE_ARGS=(--config "$1/geo-east.yaml")
}

# geo_start_peer DIR : starts region west, joined to the registry under test.
geo_start_peer() {
	local logf="$1/geo-west.log"
	printf 'replication:\n  region: west\n  peers:\n    - {name: east, url: http://%s}\n' "$STOWAGE_ADDR" >"$1/geo-west.yaml"
	"$STOWAGE_BIN" serve --addr "127.0.0.1:$GEO_WEST_PORT" --data-dir "$1/geo-west" --config "$1/geo-west.yaml" --log-level warn >"$logf" 2>&1 &
	GEO_WEST_PID=$!
	register_pid "$GEO_WEST_PID" "region west on 127.0.0.1:$GEO_WEST_PORT"
	register_log "region west log" "$logf"
	wait_http "http://127.0.0.1:$GEO_WEST_PORT/v2/" 200 "${STOWAGE_START_TIMEOUT:-30}" "$GEO_WEST_PID" || die "region west did not start"
	log "the registry under test is region east of a replicating pair; west: pid $GEO_WEST_PID on 127.0.0.1:$GEO_WEST_PORT"
}

# geo_state BASE_URL : every repository that holds manifests (their and its
# tags' counts, ACR's way) and every repo:tag's digest, without read-through,
# sorted.
geo_state() {
	local base=$1 repo out counts tag
	local -a urls
	out=$(curl -s --max-time 30 -H 'Stowage-Replication: 1' "$base/v2/_catalog" | tr -d ' \n')
	for repo in $(printf '%s' "$out" | sed -n 's/.*"repositories":\[\([^]]*\)\].*/\1/p' | tr ',' '\n' | sed -n 's/^"\(.*\)"$/\1/p' | sort); do
		counts=$(curl -s --max-time 30 "$base/acr/v1/$repo" | tr -d ' \n' | { grep -o '"\(manifestCount\|tagCount\)":[0-9]*' || true; } | tr '\n' ' ')
		[ "$counts" = '"manifestCount":0 "tagCount":0 ' ] && continue
		echo "repository $repo $counts"
		urls=()
		for tag in $(curl -s --max-time 30 -H 'Stowage-Replication: 1' "$base/v2/$repo/tags/list" | tr -d ' \n' |
			sed -n 's/.*"tags":\[\([^]]*\)\].*/\1/p' | tr ',' '\n' | sed -n 's/^"\(.*\)"$/\1/p' | sort); do
			urls+=("$base/v2/$repo/manifests/$tag")
		done
		[ "${#urls[@]}" -gt 0 ] || continue
		curl -s -I -H 'Stowage-Replication: 1' --max-time 60 \
			-H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json' \
			-w 'TAG %{url_effective} %{http_code} %header{docker-content-digest}\n' "${urls[@]}" |
			sed -n "s|^TAG $base/v2/\\(.*\\)/manifests/\\([^ ]*\\) |\\1:\\2 |p" | sort
	done
}

# geo_check_converged DIR : waits (GEO_CONVERGE_TIMEOUT s, default 60) until
# east and west hold the same manifests and tags.
geo_check_converged() {
	local t0 i=0
	t0=$(date +%s)
	while :; do
		geo_state "http://$STOWAGE_ADDR" >"$1/geo-east.state"
		geo_state "http://127.0.0.1:$GEO_WEST_PORT" >"$1/geo-west.state"
		if cmp -s "$1/geo-east.state" "$1/geo-west.state"; then
			check_pass "east and west converged ($(($(date +%s) - t0)) s): $(grep -c '^repository' "$1/geo-east.state") repositories, $(grep -vc '^repository' "$1/geo-east.state") tags"
			return 0
		fi
		if [ $(($(date +%s) - t0)) -ge "${GEO_CONVERGE_TIMEOUT:-60}" ]; then
			diff "$1/geo-east.state" "$1/geo-west.state" >&2 || true
			check_fail "east and west did not converge within ${GEO_CONVERGE_TIMEOUT:-60} s (east <, west >)"
			return 1
		fi
		i=$((i + 1))
		sleep 0.5
	done
}
