# syntax=docker/dockerfile:1
#
# onboard: one static binary in a distroless image that runs as a non-root
# user. Build with `docker build -t onboard .` or through docker-compose.yml.

# ---- build -------------------------------------------------------------
FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a code change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# CGO_ENABLED=0: a static binary that needs no libc in the final image.
# -trimpath and -buildvcs=false make the build independent of the checkout.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/onboard ./cmd/onboard

# ---- probe ---------------------------------------------------------------
# The distroless image has no shell and no HTTP client, so health checks
# would have nothing to run. BusyBox's musl build is one static binary that
# acts as the applet it is named after: copied as "wget", it is a 1 MB
# HTTP probe (wget -q -O /dev/null http://127.0.0.1:8080/readyz).
FROM busybox:1.36.1-musl AS probe

# ---- run -------------------------------------------------------------------
# distroless/static: CA certificates and tzdata, nothing else; its nonroot
# user is 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/onboard /usr/local/bin/onboard
COPY --from=probe /bin/busybox /usr/local/bin/wget
# Numeric, so that runtimes enforcing runAsNonRoot can check it.
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 8080 8090
ENTRYPOINT ["/usr/local/bin/onboard"]
CMD ["serve", "--addr", "0.0.0.0:8080", "--roles", "command,query,worker,relay,projector"]
