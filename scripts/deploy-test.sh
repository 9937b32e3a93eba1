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
# Container image: the Dockerfile's build stage (never run in CI: no base
#   images offline) only runs deploy/docker/rootfs.sh, and what its final
#   stage takes and declares matches what rootfs.sh makes (user, paths, health
#   check, binary flags); four drifted copies must fail the same check.
# Helm: deploy/helm/stowage with the helm CLI as a Go module (go run, pinned;
#   the first run compiles it into the Go build cache, later runs reuse it):
#   - helm lint --strict, single (defaults) and scale-out (ci/ values);
#   - helm template of both modes: the kinds and key fields (the generated
#     admin password in the chart's Secret), and the values the scale-out
#     mode refuses to render without; with TLS on, https probes;
#   - the stowage.yaml each mode renders is loaded by the real binary: single
#     serves (healthz 200, /v2/ 401: access control on); scale-out passes
#     the configuration checks and fails only on the unreachable database;
#     with TLS on it serves https and `stowage healthcheck` (STOWAGE_CONFIG,
#     as in the pod) finds it healthy.
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
# A low port, as the unit's header tells: its drop-in lines, applied.
lowport=$(sed -n 's/^#   \(Environment=STOWAGE_ADDR=.*\|AmbientCapabilities=CAP_NET_BIND_SERVICE\|CapabilityBoundingSet=CAP_NET_BIND_SERVICE\|PrivateUsers=no\)$/\1/p' "$UNIT")
mkdir -p "$ROOTFS/etc/systemd/system/stowage-lowport.service.d"
cp "$UNIT" "$ROOTFS/etc/systemd/system/stowage-lowport.service"
printf '[Service]\n%s\n' "$lowport" >"$ROOTFS/etc/systemd/system/stowage-lowport.service.d/override.conf"

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
# The low-port drop-in of the header: all four lines, and it verifies clean.
if [ "$(printf '%s\n' "$lowport" | grep -c .)" = 4 ] && printf '%s\n' "$lowport" | grep -qx 'PrivateUsers=no' && verify_clean stowage-lowport.service; then
	check_pass "the unit's low-port drop-in (CAP_NET_BIND_SERVICE and PrivateUsers=no) verifies clean"
else
	printf 'drop-in lines found:\n%s\n' "$lowport" >&2
	cat "$WORK/verify-stowage-lowport.service.log" >&2 2>/dev/null || true
	check_fail "the unit's header must give the low-port drop-in: AmbientCapabilities= and CapabilityBoundingSet=CAP_NET_BIND_SERVICE, PrivateUsers=no"
fi
# Why PrivateUsers=no: in a private user namespace even root cannot bind a
# port below 1024 of the host's network; stowage says what to set.
if unshare --user --map-root-user true 2>/dev/null; then
	rc=0
	run_bounded 30 unshare --user --map-root-user "$STOWAGE_BIN" serve --addr 127.0.0.1:1023 --data-dir "$WORK/lowport-data" \
		>"$WORK/lowport.log" 2>&1 || rc=$?
	if [ "$rc" = 1 ] && grep -q 'PrivateUsers=no' "$WORK/lowport.log" && [ ! -e "$WORK/lowport-data" ]; then
		check_pass "in a private user namespace port 1023 is refused, and stowage names PrivateUsers=no: $(cut -c1-120 "$WORK/lowport.log")"
	else
		cat "$WORK/lowport.log" >&2
		check_fail "port 1023 in a private user namespace: exit $rc (want 1, naming PrivateUsers=no, no data directory left)"
	fi
else
	log "no user namespaces here (unshare --user failed): the private-user-namespace bind check is not run"
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

# ---------------------------------------------------------------- container image
# CI cannot pull the Go toolchain image, so scripts/e2e-docker.sh builds the
# Dockerfile's final stage over a rootfs that deploy/docker/rootfs.sh makes
# on the host; the Dockerfile's own build stage is never run. This keeps the
# two from drifting: the build stage must do nothing but run rootfs.sh into
# /out, and what the final stage takes from /out, runs and declares (user,
# paths, health check) must match what rootfs.sh really produces.
# image_layout DOCKERFILE OUT : prints every mismatch; OUT is rootfs.sh's output.
image_layout() {
	local df=$1 out=$2 stage want got uid gid home bin
	stage=$(sed -n '/^FROM .* AS build$/,/^# ---- image ----$/p' "$df" | grep -v '^#' | grep -v '^[[:space:]]*$')
	want='FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN sh deploy/docker/rootfs.sh /out "$VERSION"'
	[ "$stage" = "$want" ] || printf 'the build stage does more than run rootfs.sh (put build steps in deploy/docker/rootfs.sh):\n%s\n' "$stage"
	final=$(sed -n '/^# ---- image ----$/,$p' "$df" | grep -v '^#')
	while read -r src; do
		[ -e "$out/${src#/out/}" ] || echo "COPY --from=build $src: rootfs.sh makes no such path"
	done < <(printf '%s\n' "$final" | sed -n 's/^COPY --from=build \(--chown=[^ ]* \)\{0,1\}\([^ ]*\) .*/\2/p')
	printf '%s\n' "$final" | grep -q '^COPY --from=build /out/root/ /$' || echo "the final stage does not copy /out/root/ to /"
	uid=$(sed -n 's/^stowage:x:\([0-9]*\):\([0-9]*\):.*/\1:\2/p' "$out/root/etc/passwd")
	home=$(sed -n 's/^stowage:x:[0-9]*:[0-9]*:[^:]*:\([^:]*\):.*/\1/p' "$out/root/etc/passwd")
	gid=$(sed -n 's/^stowage:x:\([0-9]*\):.*/\1/p' "$out/root/etc/group")
	[ -n "$uid" ] && [ "${uid#*:}" = "$gid" ] || echo "rootfs.sh: etc/passwd and etc/group disagree on the stowage user ($uid, group $gid)"
	printf '%s\n' "$final" | grep -qx "USER $uid" || echo "USER is not the stowage user of etc/passwd ($uid)"
	printf '%s\n' "$final" | grep -q "^COPY --from=build --chown=$uid /out/data/ $home/\$" || echo "the data directory is not copied to $home/ owned by $uid"
	for line in "STOWAGE_DATA_DIR=$home" "WORKDIR $home" "VOLUME \[\"$home\"\]" "PATH=/usr/local/bin"; do
		printf '%s\n' "$final" | grep -qE "(^|[[:space:]])$line( |$)" || echo "the final stage lacks $line (the user's home in etc/passwd is $home)"
	done
	[ -x "$out/root/usr/local/bin/stowage" ] || echo "rootfs.sh made no usr/local/bin/stowage"
	printf '%s\n' "$final" | grep -q 'CMD \["stowage", "healthcheck"\]' || echo 'HEALTHCHECK is not CMD ["stowage", "healthcheck"]'
	printf '%s\n' "$final" | grep -qx 'ENTRYPOINT \["stowage", "serve"\]' || echo 'ENTRYPOINT is not ["stowage", "serve"]'
}
# binary_layout OUT : the binary rootfs.sh built, as the image needs it.
binary_layout() {
	local out=$1 bin=$1/root/usr/local/bin/stowage got
	[ -x "$bin" ] || { echo "rootfs.sh made no usr/local/bin/stowage"; return; }
	got=$(go version -m "$bin" | grep -cE '^[[:space:]]build[[:space:]](CGO_ENABLED=0|-trimpath=true)$')
	[ "$got" = 2 ] || echo "the binary is not built with CGO_ENABLED=0 and -trimpath: $(go version -m "$bin" | grep -E 'CGO|trimpath' | tr '\n' ' ')"
	go tool nm "$bin" >/dev/null 2>&1 && echo "the binary keeps its symbol table (want -ldflags -s -w)"
	"$bin" version | grep -q "^stowage ci-layout " || echo "the binary does not report the VERSION given to rootfs.sh (-X main.version): $("$bin" version)"
	"$bin" healthcheck --help >/dev/null 2>&1 || echo "the binary has no healthcheck command"
	[ -s "$out/root/etc/ssl/certs/ca-certificates.crt" ] || echo "rootfs.sh made no CA bundle"
	[ "$(stat -c %a "$out/root/tmp")" = 1777 ] && [ "$(stat -c %a "$out/data")" = 700 ] || echo "tmp is not 1777 or data not 0700"
}
(cd "$STOWAGE_ROOT" && run_bounded 900 sh deploy/docker/rootfs.sh "$WORK/rootfs" ci-layout) >"$WORK/rootfs.log" 2>&1 ||
	{ cat "$WORK/rootfs.log" >&2; die "deploy/docker/rootfs.sh failed"; }
drift=$(image_layout "$STOWAGE_ROOT/Dockerfile" "$WORK/rootfs"; binary_layout "$WORK/rootfs")
if [ -z "$drift" ]; then
	check_pass "Dockerfile and rootfs.sh agree: the build stage only runs rootfs.sh; user $(sed -n 's/^USER //p' "$STOWAGE_ROOT/Dockerfile"), paths, health check and a static, stripped, versioned binary"
else
	printf '%s\n' "$drift" >&2
	check_fail "the Dockerfile and deploy/docker/rootfs.sh have drifted apart"
fi
# Controls: each drift, made on a copy, must be found.
for c in 's|^RUN sh deploy/docker/rootfs.sh /out "$VERSION"$|&\nRUN CGO_ENABLED=1 go build -o /out/root/usr/local/bin/stowage ./cmd/stowage|@@an extra build step' \
	's|^USER 65532:65532$|USER 1000:1000|@@another user' 's|"stowage", "healthcheck"|"stowage", "health"|@@another health check' \
	's|/out/data/ /var/lib/stowage/|/out/state/ /var/lib/stowage/|@@a path rootfs.sh does not make'; do
	sed "${c%%@@*}" "$STOWAGE_ROOT/Dockerfile" >"$WORK/Dockerfile.drift"
	if [ -n "$(image_layout "$WORK/Dockerfile.drift" "$WORK/rootfs")" ]; then
		check_pass "control: a Dockerfile with ${c#*@@} is found drifting"
	else
		check_fail "control: a Dockerfile with ${c#*@@} passed the layout check"
	fi
done

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
check_eq "$(kinds "$WORK/single.yaml")" "ConfigMap Secret Service StatefulSet " "single: a StatefulSet, its Service, ConfigMap and Secret (the generated admin password)"
check_eq "$(kinds "$WORK/scale-out.yaml")" "ConfigMap Deployment Secret Service " "scale-out: a Deployment, a Secret, a Service and a ConfigMap"
want_in() { # FILE DESCRIPTION PATTERN...
	local f=$1 what=$2 p miss=()
	shift 2
	for p in "$@"; do grep -qE -- "$p" "$f" || miss+=("$p"); done
	if [ ${#miss[@]} = 0 ]; then check_pass "$what"; else check_fail "$what: missing ${miss[*]}"; fi
}
want_in "$WORK/single.yaml" "single: PVC template at /var/lib/stowage, data_dir below it, non-root, read-only root, /healthz and /readyz probes" \
	'^  volumeClaimTemplates:' 'storage: 20Gi' 'mountPath: /var/lib/stowage$' 'data_dir: /var/lib/stowage/data' \
	'runAsUser: 65532' 'readOnlyRootFilesystem: true' 'path: /healthz' 'path: /readyz' 'enabled: true' \
	'name: STOWAGE_CONFIG$' 'value: /etc/stowage/stowage.yaml' 'scheme: HTTP\}' \
	'^  admin-password: "[A-Za-z0-9+/=]{24,}"$' 'key: admin-password'
want_in "$WORK/scale-out.yaml" "scale-out: 3 replicas; DB URL, S3 keys, encryption key and admin password from the Secret" \
	'^  replicas: 3$' 'postgres_env: STOWAGE_PG' 'key_env: STOWAGE_KEY' 'bucket: registry' 'emptyDir: \{\}' \
	'name: STOWAGE_PG$' 'key: postgres-url' 'name: AWS_SECRET_ACCESS_KEY' 'key: secret-access-key' \
	'key: encryption-key' 'key: admin-password' '^  postgres-url: ' '^  encryption-key: ' 'interval: 30m'
# Values the scale-out mode cannot do without.
for c in "encryption.key=:one encryption key" "postgres.url=:needs PostgreSQL" "s3.bucket=:set s3.bucket" \
	"mode=cluster:mode must be single or scale-out"; do
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

# TLS served by the registry (config.tls): the probes ask over https.
TLSV=(--set config.tls.cert_file=/etc/stowage-tls/tls.crt,config.tls.key_file=/etc/stowage-tls/tls.key
	--set 'extraVolumes[0].name=tls,extraVolumes[0].secret.secretName=registry-tls,extraVolumeMounts[0].name=tls,extraVolumeMounts[0].mountPath=/etc/stowage-tls')
if helm template t "$CHART" "${TLSV[@]}" >"$WORK/tls.yaml" 2>"$WORK/template-tls.err"; then
	check_eq "$(grep -c 'scheme: HTTPS}' "$WORK/tls.yaml")" 3 "TLS on: the startup, liveness and readiness probes use https"
	want_in "$WORK/tls.yaml" "TLS on: the certificate's Secret is mounted where config.tls points" \
		'cert_file: /etc/stowage-tls/tls.crt' 'mountPath: /etc/stowage-tls' 'secretName: registry-tls'
else
	cat "$WORK/template-tls.err" >&2
	check_fail "helm template (TLS on)"
fi

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

# TLS on: the real binary serves the rendered configuration with a
# certificate for a public name (not 127.0.0.1); `stowage healthcheck`, as
# the image's HEALTHCHECK and `kubectl exec` run it (STOWAGE_CONFIG, no
# flags), reads the same file, asks over https and trusts the server's own
# certificate. Control: the environment alone (the old way) asks over http.
config_of "$WORK/tls.yaml" "$WORK/tls-stowage.yaml" || die "no stowage.yaml in the TLS ConfigMap"
mkdir -p "$WORK/tls-certs"
(cd "$WORK/tls-certs" && run_bounded 300 go run "$(go env GOROOT)/src/crypto/tls/generate_cert.go" --host registry.example.com --ecdsa-curve P256) \
	>"$WORK/gencert.log" 2>&1 || { cat "$WORK/gencert.log" >&2; die "generate_cert.go failed"; }
sed -i -e "s|/etc/stowage-tls/tls.crt|$WORK/tls-certs/cert.pem|" -e "s|/etc/stowage-tls/tls.key|$WORK/tls-certs/key.pem|" "$WORK/tls-stowage.yaml"
port=$(pick_port)
export STOWAGE_CONFIG=$WORK/tls-stowage.yaml STOWAGE_ADDR=127.0.0.1:$port STOWAGE_DATA_DIR=$WORK/tls-data STOWAGE_ADMIN_PASSWORD=ci-admin-password
"$STOWAGE_BIN" serve >"$WORK/tls-serve.log" 2>&1 &
tls_pid=$!
register_pid "$tls_pid" "registry with TLS on 127.0.0.1:$port"
ok=""
for _ in $(seq 1 60); do
	if "$STOWAGE_BIN" healthcheck >"$WORK/tls-health.log" 2>&1; then ok=1; break; fi
	sleep 0.5
done
if [ -n "$ok" ] && grep -q "healthy: GET https://127.0.0.1:$port/healthz" "$WORK/tls-health.log"; then
	check_pass "TLS on: stowage healthcheck reads STOWAGE_CONFIG and trusts the server's own certificate: $(cat "$WORK/tls-health.log")"
else
	cat "$WORK/tls-health.log" "$WORK/tls-serve.log" >&2
	check_fail "TLS on: stowage healthcheck against the server of the rendered configuration"
fi
if env -u STOWAGE_CONFIG "$STOWAGE_BIN" healthcheck >"$WORK/tls-health-env.log" 2>&1; then
	check_fail "control: a health check that does not read the configuration file passed against a TLS server"
else
	check_pass "control: without the configuration file the health check fails: $(head -c 160 "$WORK/tls-health-env.log")"
fi
stop_pid "$tls_pid"
unset STOWAGE_CONFIG STOWAGE_ADDR STOWAGE_DATA_DIR STOWAGE_ADMIN_PASSWORD

log "deploy test: $LIB_PASSES passed, $LIB_FAILURES failed"
[ "$LIB_FAILURES" -eq 0 ]
