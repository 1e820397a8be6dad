# Miyamoto's container image: a static binary on a distroless base, run as a
# non-root user. Build it from the repository's root:
#
#   docker build -t miyamoto --build-arg VERSION=v1.2.3 .
#
# The node is configured by MIYAMOTO_* variables (every serve flag has one, e.g.
# MIYAMOTO_NODE_ID, MIYAMOTO_PEERS, MIYAMOTO_CLUSTER_SECRET, MIYAMOTO_API_TOKEN) or
# by flags after the image name. See README, "Deploying".

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# VERSION names the build in --version, traces and the start line; empty: "devel".
ARG VERSION=""
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/miyamotohq/miyamoto/net/version.Version=${VERSION}" \
      -o /out/miyamoto ./cmd/miyamoto \
    && mkdir -p /out/data

# distroless/static: CA certificates and tzdata for https workers, no shell, and a
# "nonroot" user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/miyamoto /usr/local/bin/miyamoto
# The data directory belongs to the node's user, so that a new volume does too.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
# Inside a container the node listens on every interface; peers reach it by its
# host name (the --peers list), clients through a published port or a Service.
ENV MIYAMOTO_HTTP_ADDR=0.0.0.0:8088 \
    MIYAMOTO_PEER_ADDR=0.0.0.0:7088 \
    MIYAMOTO_DATA_DIR=/data
EXPOSE 8088 7088
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/miyamoto", "serve"]
