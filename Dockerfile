# syntax=docker/dockerfile:1
#
# For people with a Docker engine (make docker-image); make image builds
# the same images with Go alone (hack/image).
# Builds both Lockstep binaries; BINARY picks the one the image runs:
#   docker build -t lockstep-scheduler .
#   docker build --build-arg BINARY=lockstep-controller -t lockstep-controller .
# Both builds share the builder stage, so the second one reuses it.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src

# Dependencies first: this layer survives source-only changes.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
# Static binaries: the final image has no libc.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/ \
        ./cmd/lockstep-scheduler ./cmd/lockstep-controller

# The base hack/image uses (make image), pinned by the same digest.
FROM gcr.io/distroless/static:nonroot@sha256:e2e927ec666bae08560abb3c55d0659eceabb657f56b6782ab500a9fc7f555e3
ARG BINARY=lockstep-scheduler
# A fixed path: ENTRYPOINT cannot expand build arguments.
COPY --from=build /out/${BINARY} /usr/local/bin/lockstep
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/lockstep"]
