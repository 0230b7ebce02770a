#!/usr/bin/env bash
# Builds the package registry (CNCF Distribution) from registry/go.mod and
# go.sum (committed), read-only like kube-router; static, so it runs in an
# image that holds nothing else. Cached: an existing binary is not rebuilt.
# Used by build-binaries.sh, and on its own for the runners' pull tests in
# `npm test` (no Kubernetes build needed). Prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
log() { printf '[build] %s\n' "$*" >&2; }

if [ ! -x "$REGISTRY_BIN/registry" ]; then
  log "building registry $REGISTRY_VERSION (dependencies from $REGISTRY_DIR/go.mod)"
  mkdir -p "$REGISTRY_BIN"
  reg_pkg=github.com/distribution/distribution/v3
  reg_t0=$(date +%s)
  ( cd "$REGISTRY_DIR" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
      -ldflags "-s -w -X $reg_pkg/version.version=$REGISTRY_VERSION -X $reg_pkg/version.revision=" \
      -o "$REGISTRY_BIN/registry.tmp" "$reg_pkg/cmd/registry" >&2 )
  mv "$REGISTRY_BIN/registry.tmp" "$REGISTRY_BIN/registry"
  log "built registry in $(( $(date +%s) - reg_t0 ))s"
fi
echo "$REGISTRY_BIN/registry"
