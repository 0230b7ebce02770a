#!/usr/bin/env bash
# Builds the pinned Kubernetes, etcd, metrics-server, kube-router and registry binaries
# from Go modules into a cache outside the repository. Idempotent: a binary already in the cache
# is not rebuilt. Usage: hack/cluster/build-binaries.sh  (prints the bin dir)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
# shellcheck source=go-build.sh
. "$here/go-build.sh"

mkdir -p "$K8S_BIN"
log() { printf '[build] %s\n' "$*" >&2; }

k8s_cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
missing=()
for c in "${k8s_cmds[@]}"; do [ -x "$K8S_BIN/$c" ] || missing+=("$c"); done

if [ ${#missing[@]} -gt 0 ]; then
  # k8s.io/kubernetes replaces its staging modules with ./staging paths, which
  # `go install pkg@version` refuses; a wrapper module that requires it and
  # points each staging module at its published v0.x release builds instead.
  wrap=$(mktemp -d)
  trap 'rm -rf "$wrap"' EXIT
  staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
    cloud-provider cluster-bootstrap code-generator component-base component-helpers
    controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation
    endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy
    kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission
    sample-apiserver sample-cli-plugin sample-controller)
  {
    echo "module faas.local/k8sbuild"
    echo
    echo "go 1.24.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for s in "${staging[@]}"; do echo "	k8s.io/$s => k8s.io/$s $K8S_STAGING_VERSION"; done
    echo ")"
  } > "$wrap/go.mod"
  printf 'package main\n\nimport (\n' > "$wrap/tools.go"
  for c in "${missing[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c" >> "$wrap/tools.go"; done
  printf ')\n\nfunc main() {}\n' >> "$wrap/tools.go"
  ( cd "$wrap"
    log "resolving k8s.io/kubernetes $K8S_VERSION"
    GOFLAGS=-mod=mod go mod tidy >&2
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=${K8S_MINOR}"
      ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    for c in "${missing[@]}"; do
      log "building $c $K8S_VERSION"
      GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$K8S_BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c" >&2
      mv "$K8S_BIN/$c.tmp" "$K8S_BIN/$c"
    done )
fi

if [ ! -x "$K8S_BIN/etcd" ]; then
  # etcd's server module also carries local replace directives: same wrapper trick.
  ewrap=$(mktemp -d)
  log "building etcd $ETCD_VERSION"
  printf 'module faas.local/etcdbuild\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$ewrap/go.mod"
  printf 'package main\n\nimport _ "go.etcd.io/etcd/server/v3"\n\nfunc main() {}\n' > "$ewrap/tools.go"
  ( cd "$ewrap" && GOFLAGS=-mod=mod go mod tidy >&2 \
    && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$K8S_BIN/etcd.tmp" go.etcd.io/etcd/server/v3 >&2 )
  mv "$K8S_BIN/etcd.tmp" "$K8S_BIN/etcd"
  rm -rf "$ewrap"
fi

if [ ! -x "$K8S_BIN/metrics-server" ]; then
  log "building metrics-server $METRICS_SERVER_VERSION"
  GOBIN="$K8S_BIN" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION" >&2
fi

if [ ! -x "$KUBE_ROUTER_BIN/kube-router" ]; then
  # A module of our own (kube-router/go.mod and go.sum, committed) requires
  # kube-router and the patched versions of its vulnerable dependencies; the
  # build reads only those files (-mod=readonly), so it is the same everywhere.
  kr_pkg=github.com/cloudnativelabs/kube-router/v2
  go_build_pinned "kube-router $KUBE_ROUTER_VERSION" "$KUBE_ROUTER_DIR" "$kr_pkg/cmd/kube-router" \
    "-s -w -X $kr_pkg/pkg/version.Version=$KUBE_ROUTER_VERSION -X $kr_pkg/pkg/version.BuildDate=1970-01-01T00:00:00Z" \
    "$KUBE_ROUTER_BIN/kube-router"
fi

bash "$here/build-registry.sh" >/dev/null

echo "$K8S_BIN"
