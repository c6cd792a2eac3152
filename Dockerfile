# syntax=docker/dockerfile:1
#
# threadmill: one static binary in a small, non-root image.
#
#   docker build -t threadmill .
#   docker run --rm threadmill version
#
# The same image runs every role (worker, scheduler, simulate, run, enqueue,
# status); docker-compose.yml picks the role with `command:`.

ARG GO_VERSION=1.26

# ---- build -----------------------------------------------------------------
FROM golang:${GO_VERSION}-alpine AS build
WORKDIR /src

# Modules first, so the download layer is reused while only code changes.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download

COPY . .
ARG VERSION=dev
# CGO off: a static binary that needs no libc. timetzdata embeds the zone
# database, so schedules in Europe/Madrid work on any base image.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -tags timetzdata \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/usr/local/bin/threadmill ./cmd/threadmill \
 && /out/usr/local/bin/threadmill version \
 && mkdir -p /out/var/lib/threadmill/threadmill-results /out/etc/threadmill/pipelines \
 && cp examples/*.yaml /out/etc/threadmill/pipelines/

# ---- run -------------------------------------------------------------------
# distroless/static: CA certificates, /etc/passwd with a "nonroot" user
# (65532), no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build --chown=65532:65532 /out/ /
USER 65532:65532
WORKDIR /var/lib/threadmill
# Results are written to ./threadmill-results, the default results root
# (--results, output.dir) from this working directory, by every command;
# mount a volume on it.
VOLUME ["/var/lib/threadmill/threadmill-results"]
# The scheduler, schedule ls and backfill read the pipelines here unless
# --pipelines says otherwise; mount your own directory over it.
ENV THREADMILL_PIPELINES=/etc/threadmill/pipelines
# 9090: /metrics, /healthz, /readyz (--metrics-addr); 8080: the simulator.
EXPOSE 9090 8080
ENTRYPOINT ["/usr/local/bin/threadmill"]
CMD ["--help"]
