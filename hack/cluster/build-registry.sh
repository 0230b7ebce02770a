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
# shellcheck source=go-build.sh
. "$here/go-build.sh"

if [ ! -x "$REGISTRY_BIN/registry" ]; then
  reg_pkg=github.com/distribution/distribution/v3
  go_build_pinned "registry $REGISTRY_VERSION" "$REGISTRY_DIR" "$reg_pkg/cmd/registry" \
    "-s -w -X $reg_pkg/version.version=$REGISTRY_VERSION -X $reg_pkg/version.revision=" \
    "$REGISTRY_BIN/registry"
fi
echo "$REGISTRY_BIN/registry"
