# Stowage container image: a static binary on an empty base (FROM scratch),
# run as UID/GID 65532, data in the volume /var/lib/stowage.
#
#   docker build -t stowage .
#   docker run -d --name stowage -p 5000:5000 -v stowage-data:/var/lib/stowage stowage
#
# Safe by default: it listens on 0.0.0.0:5000 with access control ON (a
# registry on a non-loopback address without auth refuses to start, see
# docs/access.md). The first admin's password comes from
# STOWAGE_ADMIN_PASSWORD, or is generated into
# /var/lib/stowage/initial-admin-password. Keep /var/lib/stowage: it holds the
# metadata and the encryption key (keys/service.json) without which the blobs
# cannot be read. See docs/install.md.

# The Go toolchain image: at least the go line of go.mod (--build-arg GO_IMAGE=…).
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN sh deploy/docker/rootfs.sh /out "$VERSION"

# ---- image ----
# scripts/e2e-docker.sh builds the lines from here on, after a build stage
# that holds the same /out made on the host by deploy/docker/rootfs.sh.
FROM scratch
COPY --from=build /out/root/ /
COPY --from=build --chown=65532:65532 /out/data/ /var/lib/stowage/
ENV PATH=/usr/local/bin \
    STOWAGE_ADDR=0.0.0.0:5000 \
    STOWAGE_DATA_DIR=/var/lib/stowage \
    STOWAGE_AUTH=on
USER 65532:65532
WORKDIR /var/lib/stowage
VOLUME ["/var/lib/stowage"]
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["stowage", "healthcheck"]
ENTRYPOINT ["stowage", "serve"]
