#!/usr/bin/env bash
# Checks the ways to deploy Stowage that CI cannot run for real (no systemd as
# PID 1, no Kubernetes cluster here); see docs/install.md.
#
# systemd: deploy/systemd/stowage.service in a scratch root (--root) holding
#   the built binary and the host's system units:
#   - `systemd-analyze verify` must exit 0 AND print nothing (systemd 252 only
#     warns, exit 0, on an unknown directive or value), and a control unit with
#     two typos and one whose binary is missing must fail the same check;
#   - `systemd-analyze security --offline=yes`: exposure at most 2.0, and a
#     control without the hardening section must exceed it;
#   - the hardening directives docs/install.md promises are all there.
# Helm: deploy/helm/stowage with the helm CLI as a Go module (go run, pinned;
#   the first run compiles it into the Go build cache, later runs reuse it):
#   - helm lint --strict, single (defaults) and scale-out (ci/ values);
#   - helm template of both modes: the kinds and key fields, and the values
#     the scale-out mode refuses to render without;
#   - the stowage.yaml each mode renders is loaded by the real binary: single
#     serves (healthz 200, /v2/ 401: access control on); scale-out passes
#     the configuration checks and fails only on the unreachable database.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
lib_init
export STOWAGE_TEST_REGISTRY=stowage # these are Stowage's own files, whatever registry the other stages test

HELM_MODULE=helm.sh/helm/v3/cmd/helm@v3.21.4
CHART=$STOWAGE_ROOT/deploy/helm/stowage
UNIT=$STOWAGE_ROOT/deploy/systemd/stowage.service
make_tmpdir WORK stowage-deploy-test
build_stowage

# ---------------------------------------------------------------- systemd
if ! command -v systemd-analyze >/dev/null 2>&1; then
	log "installing systemd (for systemd-analyze)"
	{ "${SUDO[@]}" apt-get install -y -q systemd || { "${SUDO[@]}" apt-get update -q && "${SUDO[@]}" apt-get install -y -q systemd; }; } \
		>"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log" >&2; die "apt-get install systemd failed"; }
	command -v systemd-analyze >/dev/null 2>&1 || die "systemd-analyze is still missing after apt-get install systemd"
fi
log "$(systemd-analyze --version | head -n 1)"
ROOTFS=$WORK/root
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/etc/systemd/system" "$ROOTFS/usr/lib/systemd"
cp -a /usr/lib/systemd/system "$ROOTFS/usr/lib/systemd/" # sysinit.target, network-online.target...
cp "$STOWAGE_BIN" "$ROOTFS/usr/local/bin/stowage"
cp "$UNIT" "$ROOTFS/etc/systemd/system/stowage.service"
sed -e 's/^ProtectSystem=strict/ProtectSystem=stric/' -e 's/^SystemCallFilter=@system-service/SystemCallFilter=@sytem-service/' \
	"$UNIT" >"$ROOTFS/etc/systemd/system/stowage-typo.service"
sed 's|^ExecStart=/usr/local/bin/stowage|ExecStart=/usr/local/bin/stowage-missing|' "$UNIT" >"$ROOTFS/etc/systemd/system/stowage-nobin.service"
sed '/^# Identity and files/,/^\[Install\]/{/^\[Install\]/!d}' "$UNIT" >"$ROOTFS/etc/systemd/system/stowage-soft.service"

# verify_clean UNIT : systemd-analyze verify exits 0 and says nothing.
verify_clean() {
	local out rc=0
	out=$(run_bounded 60 systemd-analyze verify --root="$ROOTFS" "$1" 2>&1) || rc=$?
	printf '%s' "$out" >"$WORK/verify-$1.log"
	[ "$rc" = 0 ] && [ -z "$out" ]
}
if verify_clean stowage.service; then
	check_pass "systemd-analyze verify stowage.service: no error, no warning"
else
	cat "$WORK/verify-stowage.service.log" >&2
	check_fail "systemd-analyze verify stowage.service"
fi
for u in stowage-typo.service stowage-nobin.service; do
	if verify_clean "$u"; then
		check_fail "control: verify of $u (broken on purpose) passed the check"
	else
		check_pass "control: $u fails the check: $(head -n 1 "$WORK/verify-$u.log")"
	fi
done
# exposure UNIT : prints the overall exposure level (0.0 best .. 10.0).
exposure() {
	run_bounded 60 systemd-analyze security --offline=yes --root="$ROOTFS" "$ROOTFS/etc/systemd/system/$1" 2>&1 |
		sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'
}
e=$(exposure stowage.service)
s=$(exposure stowage-soft.service)
if [ -n "$e" ] && awk -v e="$e" 'BEGIN { exit !(e <= 2.0) }'; then
	check_pass "systemd-analyze security --offline: exposure $e (at most 2.0)"
else
	check_fail "systemd-analyze security --offline: exposure '$e', want at most 2.0"
fi
if [ -n "$s" ] && awk -v s="$s" 'BEGIN { exit !(s > 2.0) }'; then
	check_pass "control: without the hardening section the exposure is $s (over 2.0)"
else
	check_fail "control: the unit without hardening scored '$s' (want over 2.0: the check would not notice)"
fi
missing=()
for d in DynamicUser=yes StateDirectory=stowage ProtectSystem=strict ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes \
	CapabilityBoundingSet= 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' SystemCallFilter=@system-service \
	UMask=0077 'Environment=STOWAGE_ADDR=127.0.0.1:5000'; do
	grep -qxF "$d" "$UNIT" || missing+=("$d")
done
if [ ${#missing[@]} = 0 ]; then
	check_pass "stowage.service has the hardening directives docs/install.md lists"
else
	check_fail "stowage.service lacks: ${missing[*]}"
fi

# ---------------------------------------------------------------- helm
helm() { run_bounded 900 go run "$HELM_MODULE" "$@"; }
t0=$(date +%s)
helm version --short >"$WORK/helm-version.log" 2>&1 || { cat "$WORK/helm-version.log" >&2; die "go run $HELM_MODULE failed"; }
log "helm $(cat "$WORK/helm-version.log") ($HELM_MODULE, ready in $(($(date +%s) - t0))s)"
SCALE=(-f "$CHART/ci/scale-out-values.yaml")

for mode in single scale-out; do
	args=()
	[ "$mode" = scale-out ] && args=("${SCALE[@]}")
	if helm lint --strict "$CHART" "${args[@]}" >"$WORK/lint-$mode.log" 2>&1; then
		check_pass "helm lint --strict ($mode)"
	else
		cat "$WORK/lint-$mode.log" >&2
		check_fail "helm lint --strict ($mode)"
	fi
	if helm template t "$CHART" "${args[@]}" >"$WORK/$mode.yaml" 2>"$WORK/template-$mode.err"; then
		check_pass "helm template ($mode): $(grep -c '^kind:' "$WORK/$mode.yaml") objects"
	else
		cat "$WORK/template-$mode.err" >&2
		check_fail "helm template ($mode)"
	fi
done
kinds() { grep '^kind:' "$1" | sed 's/kind: //' | sort | tr '\n' ' '; }
check_eq "$(kinds "$WORK/single.yaml")" "ConfigMap Service StatefulSet " "single: a StatefulSet, its Service and ConfigMap, no Secret"
check_eq "$(kinds "$WORK/scale-out.yaml")" "ConfigMap Deployment Secret Service " "scale-out: a Deployment, a Secret, a Service and a ConfigMap"
want_in() { # FILE DESCRIPTION PATTERN...
	local f=$1 what=$2 p miss=()
	shift 2
	for p in "$@"; do grep -qE -- "$p" "$f" || miss+=("$p"); done
	if [ ${#miss[@]} = 0 ]; then check_pass "$what"; else check_fail "$what: missing ${miss[*]}"; fi
}
want_in "$WORK/single.yaml" "single: PVC template at /var/lib/stowage, data_dir below it, non-root, read-only root, /healthz and /readyz probes" \
	'^  volumeClaimTemplates:' 'storage: 20Gi' 'mountPath: /var/lib/stowage$' 'data_dir: /var/lib/stowage/data' \
	'runAsUser: 65532' 'readOnlyRootFilesystem: true' 'path: /healthz' 'path: /readyz' 'enabled: true'
want_in "$WORK/scale-out.yaml" "scale-out: 3 replicas; DB URL, S3 keys, encryption key and admin password from the Secret" \
	'^  replicas: 3$' 'postgres_env: STOWAGE_PG' 'key_env: STOWAGE_KEY' 'bucket: registry' 'emptyDir: \{\}' \
	'name: STOWAGE_PG$' 'key: postgres-url' 'name: AWS_SECRET_ACCESS_KEY' 'key: secret-access-key' \
	'key: encryption-key' 'key: admin-password' '^  postgres-url: ' '^  encryption-key: ' 'interval: 30m'
# Values the scale-out mode cannot do without.
for c in "encryption.key=:one encryption key" "postgres.url=:needs PostgreSQL" "s3.bucket=:set s3.bucket" \
	"auth.adminPassword=:first admin's password" "mode=cluster:mode must be single or scale-out"; do
	set_arg=${c%%:*} want=${c#*:}
	if helm template t "$CHART" "${SCALE[@]}" --set "$set_arg" >/dev/null 2>"$WORK/neg.err"; then
		check_fail "helm template with $set_arg rendered (should refuse)"
	elif grep -qF "$want" "$WORK/neg.err"; then
		check_pass "helm template with $set_arg refuses: $want"
	else
		cat "$WORK/neg.err" >&2
		check_fail "helm template with $set_arg failed without saying '$want'"
	fi
done

# The rendered stowage.yaml of each mode, loaded by the real binary.
config_of() { # RENDERED OUT : the ConfigMap's stowage.yaml
	sed -n '/^  stowage.yaml: |$/,/^---/p' "$1" | sed '1d;/^---/d;s/^    //' >"$2"
	[ -s "$2" ]
}
config_of "$WORK/single.yaml" "$WORK/single-stowage.yaml" || die "no stowage.yaml in the single-mode ConfigMap"
config_of "$WORK/scale-out.yaml" "$WORK/scale-stowage.yaml" || die "no stowage.yaml in the scale-out ConfigMap"
STOWAGE_ADMIN_PASSWORD=ci-admin-password STOWAGE_READY_STATUS=401 start_stowage "$WORK/single-data" --config "$WORK/single-stowage.yaml"
if [ "$(http_status "$STOWAGE_URL/healthz")" = 200 ] && grep -q 'access control on' "$STOWAGE_LOG"; then
	check_pass "single: stowage serve --config <rendered stowage.yaml> serves, access control on"
else
	check_fail "single: the rendered configuration does not serve as expected"
fi
stop_stowage
rc=0
STOWAGE_PG=$(sed -n 's/^postgres: {url: "\(.*\)", .*/\1/p' "$CHART/ci/scale-out-values.yaml") \
	STOWAGE_KEY=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= STOWAGE_ADMIN_PASSWORD=ci-admin-password \
	AWS_ACCESS_KEY_ID=ci-access AWS_SECRET_ACCESS_KEY=ci-secret \
	run_bounded 60 "$STOWAGE_BIN" serve --config "$WORK/scale-stowage.yaml" --addr 127.0.0.1:0 --data-dir "$WORK/scale-data" \
	>"$WORK/scale-serve.log" 2>&1 || rc=$?
if [ "$rc" = 1 ] && grep -qiE 'postgres|database|127\.0\.0\.1:1' "$WORK/scale-serve.log"; then
	check_pass "scale-out: the rendered configuration is accepted; serve stops at the unreachable database: $(grep -m1 -iE 'postgres|database' "$WORK/scale-serve.log" | cut -c1-160)"
else
	cat "$WORK/scale-serve.log" >&2
	check_fail "scale-out: stowage serve with the rendered configuration exited $rc (want 1, on the database)"
fi

log "deploy test: $LIB_PASSES passed, $LIB_FAILURES failed"
[ "$LIB_FAILURES" -eq 0 ]
