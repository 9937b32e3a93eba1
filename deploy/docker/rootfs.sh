#!/bin/sh
# Builds the files of the Stowage container image into DIR:
#   DIR/root/usr/local/bin/stowage              static binary (CGO_ENABLED=0)
#   DIR/root/etc/ssl/certs/ca-certificates.crt  CA bundle (S3, Azure, PostgreSQL over TLS)
#   DIR/root/etc/passwd, etc/group              the stowage user, UID/GID 65532
#   DIR/root/tmp (1777)
#   DIR/data (0700)   becomes /var/lib/stowage, copied apart to be owned by 65532
# Used twice, so the image is built one way: by the Dockerfile's build stage
# (in the Go toolchain image) and by scripts/e2e-docker.sh on the host (CI
# cannot pull base images). POSIX sh: the build stage may have no bash.
#
# Usage: deploy/docker/rootfs.sh DIR [VERSION]   (run from the repository root)
set -eu
dir=$1
version=${2:-dev}
[ -f go.mod ] && [ -d cmd/stowage ] || { echo "rootfs.sh: run it from the repository root" >&2; exit 2; }
rm -rf "$dir"
mkdir -p "$dir/data"
dir=$dir/root
mkdir -p "$dir/usr/local/bin" "$dir/etc/ssl/certs" "$dir/tmp"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$dir/usr/local/bin/stowage" ./cmd/stowage
ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca" ] || { echo "rootfs.sh: $ca not found (apt-get install ca-certificates)" >&2; exit 1; }
cp "$ca" "$dir/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nstowage:x:65532:65532:stowage:/var/lib/stowage:/sbin/nologin\n' >"$dir/etc/passwd"
printf 'root:x:0:\nstowage:x:65532:\n' >"$dir/etc/group"
chmod 0700 "$dir/../data"
chmod 1777 "$dir/tmp"
