#!/usr/bin/env bash
# Builds the distlock image without pulling anything: the binary is compiled
# here (static, CGO off) and copied into a FROM scratch image.
# Usage: docker/build.sh [image-tag]   (default distlock:latest)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
tag="${1:-distlock:latest}"
CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o docker/node ./cmd/node
DOCKER_BUILDKIT=0 docker build -q -t "$tag" .
