#!/usr/bin/env bash
# Runs the PostgreSQL tests against a private, throwaway PostgreSQL: the DB
# conformance suite and the PostgreSQL-specific tests (meta/postgres), the
# migrate and migrate-metadata tests (cmd/stowage), then the multi-node tests:
# several `stowage serve` processes sharing the database and one storage
# directory (e2e: shared key, chunked uploads across nodes, GC stress, kill -9
# of a node mid-push, migrate-metadata then serve; and the OCI conformance
# suite through a round-robin proxy, scripts/multinode-conformance.sh). The
# server: Debian's `postgresql` (installed with apt-get when missing), a new
# cluster in a temporary directory, listening on 127.0.0.1 on a free port and
# on a unix socket in that directory. The server is stopped (by its data
# directory and postmaster PID) and the directory removed at exit; exits with
# go test's status. Safe to run twice, or twice at once.
#
#   scripts/postgres-test.sh [go test flags, e.g. -run TestConformance -v]
#
# Env: GO_TEST_TIMEOUT=8m (go test -timeout), STOWAGE_KEEP_TMP=1 (keep the
# cluster's directory and log).
#
# PostgreSQL refuses to run as root: as root, the cluster belongs to the
# `postgres` user that the Debian package creates, and its commands run
# through runuser; as any other user, they run as that user.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
lib_init
cd "$STOWAGE_ROOT" || exit 1
START=$(date +%s)

# ---------------------------------------------------------------- install
# pg_bin: the newest installed server's bin directory.
pg_bin() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -n "$d" ] && [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && echo "$d"
}
apt_install() { # PACKAGES...
	command -v apt-get >/dev/null 2>&1 || die "missing $*, and no apt-get to install them"
	if [ "${#SUDO[@]}" -gt 0 ] && ! command -v sudo >/dev/null 2>&1; then
		die "missing $*; not root and no sudo to install them"
	fi
	local -a apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0)
	log "installing: $*"
	if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
		run_bounded 300 "${apt[@]}" update || die "apt-get update failed"
	fi
	if ! run_bounded 600 "${apt[@]}" install --no-install-recommends "$@"; then
		log "install failed; running apt-get update and retrying"
		run_bounded 300 "${apt[@]}" update || die "apt-get update failed"
		run_bounded 600 "${apt[@]}" install --no-install-recommends "$@" || die "apt-get install $* failed"
	fi
}

command -v go >/dev/null 2>&1 || die "go not found (expected at /usr/local/go/bin/go)"
pkgs=()
PGBIN=$(pg_bin) || pkgs+=(postgresql)
command -v gcc >/dev/null 2>&1 || pkgs+=(gcc libc6-dev) # go test -race needs cgo
if [ "${#pkgs[@]}" -gt 0 ]; then
	apt_install "${pkgs[@]}"
	PGBIN=$(pg_bin) || die "postgresql is installed but no /usr/lib/postgresql/*/bin/postgres was found"
fi
INSTALLED=$(date +%s)
log "PostgreSQL server: $("$PGBIN/postgres" --version) ($PGBIN)"

# ---------------------------------------------------------------- cluster
# as_pg CMD...: runs CMD as the cluster's owner.
if [ "$(id -u)" -eq 0 ]; then
	id postgres >/dev/null 2>&1 || die "no postgres user (the Debian postgresql package creates it)"
	as_pg() { runuser -u postgres -- "$@"; }
	OWNER=postgres
else
	as_pg() { "$@"; }
	OWNER=$(id -un)
fi

make_tmpdir TMP stowage-postgres
DATA=$TMP/data
SOCK=$TMP/sock
LOG=$TMP/postgres.log
mkdir -p "$SOCK"
PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$PASSWORD" >"$TMP/pwfile"
chmod 600 "$TMP/pwfile"
[ "$OWNER" = "$(id -un)" ] || chown -R "$OWNER:" "$TMP"
register_log "postgres log" "$LOG"

log "initdb $DATA"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --pwfile="$TMP/pwfile" -E UTF8 --locale=C.UTF-8 \
	--auth-local=trust --auth-host=scram-sha-256 >"$TMP/initdb.log" 2>&1 ||
	{
		cat "$TMP/initdb.log" >&2
		die "initdb failed"
	}
rm -f "$TMP/pwfile"

# Stopped at exit whatever happens: pg_ctl's fast shutdown first, then the
# postmaster by PID (lib.sh's stop_pid) if it is still there.
pg_stop() {
	[ -f "$DATA/postmaster.pid" ] || return 0
	as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 30 stop >/dev/null 2>&1 ||
		log "pg_ctl stop failed; stopping the postmaster by PID"
}
register_hook pg_stop

# A throwaway server: durability off, which is what makes it quick.
PORT=""
for attempt in 1 2 3 4 5; do
	p=$(pick_port)
	if as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 -o \
		"-c listen_addresses=127.0.0.1 -p $p -k $SOCK -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
		start >/dev/null; then
		PORT=$p
		break
	fi
	log "postgres did not start on port $p (attempt $attempt)"
	tail -n 5 "$LOG" >&2
done
[ -n "$PORT" ] || die "postgres did not start"
PMPID=$(head -n 1 "$DATA/postmaster.pid")
register_pid "$PMPID" postgres
log "postgres running: pid $PMPID, 127.0.0.1:$PORT, socket $SOCK"

PSQL=$PGBIN/psql
[ -x "$PSQL" ] || PSQL=psql
psql_admin() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d postgres "$@"; }
psql_admin -c "CREATE ROLE stowage LOGIN PASSWORD '$PASSWORD'" -c "CREATE DATABASE stowage OWNER stowage" ||
	die "could not create the stowage role and database"

# ---------------------------------------------------------------- tests
psql_admin -c "CREATE DATABASE stowage_multinode OWNER stowage" || die "could not create the stowage_multinode database"
export STOWAGE_TEST_POSTGRES="postgres://stowage:$PASSWORD@127.0.0.1:$PORT/stowage?sslmode=disable"
export STOWAGE_MULTINODE_DATABASE="postgres://stowage:$PASSWORD@127.0.0.1:$PORT/stowage_multinode?sslmode=disable"
# This stage provides PostgreSQL and runs the real server: a test that would
# skip for lack of either fails instead (internal/testenv).
export STOWAGE_REQUIRE_POSTGRES=1 STOWAGE_REQUIRE_E2E=1
STEPS=()
step() { # NAME CMD...
	local name=$1 t0 rc
	shift
	log "$name"
	t0=$(date +%s)
	"$@"
	rc=$?
	STEPS+=("$(printf '%-4s %4ss  %s' "$([ "$rc" -eq 0 ] && echo ok || echo FAIL)" "$(($(date +%s) - t0))" "$name")")
	return "$rc"
}
rc=0
# With arguments, only the DB suite runs, with them (e.g. -run TestConformance -v).
step "DB suite: go test -race ./meta/postgres/" \
	go test -race -count=1 -timeout "${GO_TEST_TIMEOUT:-8m}" "$@" ./meta/postgres/ || rc=1
if [ "$#" -eq 0 ]; then
	step "migrate, migrate-metadata, limits across nodes: go test -race ./cmd/stowage/ -run 'TestMigrate|AcrossNodes|TestPoolMetrics'" \
		go test -race -count=1 -timeout 5m -run 'TestMigrate|AcrossNodes|TestPoolMetrics' ./cmd/stowage/ || rc=1
	step "shared limit buckets: go test -race ./limits/" \
		go test -race -count=1 -timeout 5m ./limits/ || rc=1
	step "webhook deliveries on PostgreSQL: go test -race ./webhook/ -run TestPostgres" \
		go test -race -count=1 -timeout 5m -run TestPostgres ./webhook/ || rc=1
	step "replication clocks, locks and identities on PostgreSQL: go test ./replication/ -run TestPostgres" \
		go test -race -count=1 -timeout 5m -run TestPostgres ./replication/ || rc=1
	step "signing key on PostgreSQL (several first starts, sealing): go test ./auth/ -run 'SigningKey|FirstStart'" \
		go test -race -count=1 -timeout 5m -run 'SigningKey|FirstStart' ./auth/ || rc=1
	# Several stowage serve processes on this PostgreSQL and one storage directory.
	step "multi-node e2e: go test ./e2e/ (shared key, chunked uploads across nodes, GC stress, kill -9, migrate-metadata, geo-replication with a region on PostgreSQL)" \
		go test -count=1 -timeout 8m -run 'TestMultiNode|TestGCStressMultiNode|TestMigrateMetadataThenScaleOut|TestGeoReplication' -v ./e2e/ || rc=1
	step "model test on PostgreSQL: go test ./internal/modeltest/ -run TestModelPostgres" \
		go test -count=1 -timeout 5m -run 'TestModelPostgres' ./internal/modeltest/ || rc=1
	step "multi-node OCI conformance: scripts/multinode-conformance.sh" \
		"$STOWAGE_ROOT/scripts/multinode-conformance.sh" || rc=1
fi
END=$(date +%s)
log "summary:"
for s in "${STEPS[@]}"; do log "  $s"; done
log "exit status $rc; $((END - START))s in all ($((INSTALLED - START))s installing)"
exit "$rc"
