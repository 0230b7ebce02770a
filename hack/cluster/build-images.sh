#!/usr/bin/env bash
# Builds the cluster's and the project's images without Docker or a registry
# and imports them into the cluster's containerd (namespace k8s.io):
#   faas.local/pause:1, faas.local/metrics-server:<v>,
#   faas.local/registry:<v>                             (cluster parts)
#   faas-python-runner:latest, faas-node-runner:latest,
#   faas-gateway:latest, faas-operator:latest           (the project's)
# Same file layout and entrypoints as runner/Dockerfile, runner-node/Dockerfile,
# gateway/Dockerfile and operator/Dockerfile (see docs/cluster.md).
# Base layers (a Debian bookworm minbase rootfs with python3, the host's Node.js)
# are cached in $FAAS_CACHE/images keyed by a hash of their recipe and inputs;
# app layers are rebuilt every time, byte-for-byte reproducibly, and an image
# whose manifest digest is unchanged is not imported again.
# Usage: hack/cluster/build-images.sh [image ...]   (default: all)
#        hack/cluster/build-images.sh --base-only  (fill the base-layer cache; no containerd needed)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

IMAGES_CACHE=$FAAS_CACHE/images
BASE_RECIPE="v1 bookworm minbase +python3 faas:10001"
APP_UID=10001
mkdir -p "$IMAGES_CACHE"
work=$(mktemp -d "$IMAGES_CACHE/work.XXXXXX")
cleanup() {
  # debootstrap mounts /proc and /sys in its target; never rm -rf across a mount.
  local m
  for m in $(awk -v d="$work/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  awk -v d="$work/" 'index($2, d) == 1 { f = 1 } END { exit !f }' /proc/self/mounts || rm -rf "$work"
}
trap cleanup EXIT

ilog() { printf '[images] %s\n' "$*" >&2; }
hash_of() { sha256sum | cut -c1-16; }
# Deterministic tar of DIR's entries (root-owned, mtime 0).
det_tar() { tar -C "$1" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$2" "${@:3}"; }

debian_mirror() {
  if [ -n "${FAAS_DEBIAN_MIRROR:-}" ]; then echo "$FAAS_DEBIAN_MIRROR"; return; fi
  local m
  m=$(awk '/^URIs:/ { u = $2 } /^Suites:/ && / bookworm( |$)/ && u !~ /security/ { print u; exit }' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$m" ] || m=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  [ -n "$m" ] || die "no Debian bookworm mirror in /etc/apt/sources.list*; set FAAS_DEBIAN_MIRROR"
  echo "$m"
}

# base_layer: Debian bookworm minbase with python3 and the user faas (10001).
base_layer() {
  local key out root
  key=$(echo "$BASE_RECIPE" | hash_of)
  out=$IMAGES_CACHE/base-bookworm-$key.tar
  if [ ! -s "$out" ]; then
    command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
    root=$work/rootfs
    ilog "debootstrap bookworm minbase + python3 (once; cached as $(basename "$out"))"
    debootstrap --variant=minbase --include=python3 bookworm "$root" "$(debian_mirror)" > "$work/debootstrap.log" 2>&1 \
      || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    echo "faas:x:$APP_UID:$APP_UID:faas:/app:/usr/sbin/nologin" >> "$root/etc/passwd"
    echo "faas:x:$APP_UID:" >> "$root/etc/group"
    rm -rf "${root:?}"/var/cache/apt/archives/*.deb "${root:?}"/var/lib/apt/lists/* "${root:?}"/var/log/* "${root:?}"/dev/*
    mkdir -p "$root/app" "$root/code"
    chmod 1777 "$root/tmp"
    tar -C "$root" --numeric-owner --sort=name -cf "$out.tmp" .
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

# node_layer: the host's Node.js as /usr/local/bin/node (as in node:20-slim).
node_layer() {
  local node key out
  node=$(readlink -f "$(command -v node)")
  key=$(sha256sum < "$node" | hash_of)
  out=$IMAGES_CACHE/node-$("$node" --version)-$key.tar
  if [ ! -s "$out" ]; then
    mkdir -p "$work/node/usr/local/bin"
    cp "$node" "$work/node/usr/local/bin/node"
    det_tar "$work/node" "$out.tmp" usr
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

# import_image NAME OCI-ARGS...: assemble and import unless unchanged.
import_image() {
  local name=$1 full existing digest
  shift
  full=$name
  case $name in */*) ;; *) full=docker.io/library/$name ;; esac
  existing=$(ctr_ images ls "name==$full" 2>/dev/null | awk 'NR == 2 { print $3 }')
  digest=$(python3 "$here/images/oci-image.py" --name "$name" --out "$work/image.tar" --existing "$existing" "$@")
  if [ "$digest" = unchanged ]; then ilog "$name unchanged ($existing)"; return 0; fi
  ctr_ images import "$work/image.tar" >/dev/null
  rm -f "$work/image.tar"
  ilog "imported $name ($digest)"
}

build_pause() {
  local key out
  key=$(hash_of < "$here/images/pause.c")
  out=$IMAGES_CACHE/pause-$key.tar
  if [ ! -s "$out" ]; then
    mkdir -p "$work/pause"
    gcc -static -Os -s -o "$work/pause/pause" "$here/images/pause.c"
    det_tar "$work/pause" "$out.tmp" pause
    mv "$out.tmp" "$out"
  fi
  import_image "$PAUSE_IMAGE" --layer "$out" --entrypoint '["/pause"]' --user 65535:65535
}

build_metrics_server() {
  local key out
  key=$(hash_of < "$K8S_BIN/metrics-server")
  out=$IMAGES_CACHE/metrics-server-$key.tar
  if [ ! -s "$out" ]; then
    mkdir -p "$work/ms/tmp"
    chmod 1777 "$work/ms/tmp"
    cp "$K8S_BIN/metrics-server" "$work/ms/metrics-server"
    det_tar "$work/ms" "$out.tmp" metrics-server tmp
    mv "$out.tmp" "$out"
  fi
  import_image "$METRICS_SERVER_IMAGE" --layer "$out" --entrypoint '["/metrics-server"]' --user 65534:65534 --expose 10250
}

# The package registry (deploy/registry.yaml): the static binary, its config
# and two empty directories (the storage mount point, /tmp); uid 10001.
build_registry() {
  local key out conf=$REGISTRY_DIR/config.yml
  [ -x "$REGISTRY_BIN/registry" ] || "$here/build-binaries.sh" >/dev/null
  key=$(cat "$REGISTRY_BIN/registry" "$conf" | hash_of)
  out=$IMAGES_CACHE/registry-$key.tar
  if [ ! -s "$out" ]; then
    mkdir -p "$work/reg/etc/faas-registry" "$work/reg/var/lib/registry" "$work/reg/tmp"
    chmod 1777 "$work/reg/tmp"
    cp "$REGISTRY_BIN/registry" "$work/reg/registry"
    install -m 0644 "$conf" "$work/reg/etc/faas-registry/config.yml"
    det_tar "$work/reg" "$out.tmp" etc registry tmp var
    mv "$out.tmp" "$out"
  fi
  import_image "$REGISTRY_IMAGE" --layer "$out" --entrypoint '["/registry","serve","/etc/faas-registry/config.yml"]' \
    --user "$APP_UID:$APP_UID" --expose 5000 --env OTEL_TRACES_EXPORTER=none
}

# faas-python-runner: runner/Dockerfile copies packages/runner-python/ to /app.
build_python_runner() {
  local src=$REPO_ROOT/packages/runner-python
  if [ ! -f "$src/faas_runner/__main__.py" ]; then ilog "skipping faas-python-runner: no $src/faas_runner/__main__.py yet"; return 0; fi
  mkdir -p "$work/py/app"
  tar -C "$src" --exclude=__pycache__ --exclude='*.pyc' --exclude=tests --exclude=.pytest_cache -cf - . | tar -C "$work/py/app" -xf -
  det_tar "$work/py" "$work/py.tar" app
  local base
  base=$(base_layer)
  import_image faas-python-runner:latest --layer "$base" --layer "$work/py.tar" \
    --entrypoint '["python3","-m","faas_runner"]' --workdir /app --user "$APP_UID:$APP_UID" --expose 8080 \
    --env PYTHONPATH=/app --env PYTHONUNBUFFERED=1 --env PYTHONDONTWRITEBYTECODE=1 \
    --env FAAS_PORT=8080 --env FAAS_HOST=0.0.0.0 --env FAAS_CODE_DIR=/code
}

# A Node.js app image: /app/package.json, the production node_modules and the
# workspace packages' package.json + dist, run as node /app/packages/<pkg>/dist/main.js.
build_node_app() {
  local image=$1 pkg=$2 dir=$REPO_ROOT/packages/$2 stage=$work/$2
  shift 2
  if [ ! -f "$dir/src/main.ts" ] && [ ! -f "$dir/dist/main.js" ]; then
    ilog "skipping $image: packages/$pkg has no src/main.ts yet"; return 0
  fi
  if [ -f "$dir/src/main.ts" ] && [ -x "$REPO_ROOT/node_modules/.bin/tsc" ]; then
    ( cd "$REPO_ROOT" && node_modules/.bin/tsc -b "packages/$pkg" ) >&2 \
      || { ilog "skipping $image: packages/$pkg does not compile (tsc -b packages/$pkg)"; return 0; }
  fi
  if [ ! -f "$dir/dist/main.js" ]; then ilog "skipping $image: no packages/$pkg/dist/main.js (run npm run build)"; return 0; fi
  local paths
  paths=$(node "$here/images/node-closure.mjs" "$REPO_ROOT" "packages/$pkg") \
    || { ilog "skipping $image: dependencies of packages/$pkg are not installed (npm ci)"; return 0; }
  mkdir -p "$stage/app"
  # shellcheck disable=SC2086
  ( cd "$REPO_ROOT" && tar --exclude='*.tsbuildinfo' --exclude='*.test.js' --exclude='*.test.d.ts' -cf - package.json $paths ) \
    | tar -C "$stage/app" -xf -
  det_tar "$stage" "$work/$pkg.tar" app
  local base node
  base=$(base_layer)
  node=$(node_layer)
  import_image "$image" --layer "$base" --layer "$node" --layer "$work/$pkg.tar" \
    --entrypoint "[\"node\",\"/app/packages/$pkg/dist/main.js\"]" --workdir /app --user "$APP_UID:$APP_UID" \
    --env NODE_ENV=production "$@"
}

if [ "${1:-}" = --base-only ]; then base_layer; node_layer; exit 0; fi
[ -S "$CONTAINERD_SOCK" ] || die "containerd is not running ($CONTAINERD_SOCK); run: npm run cluster -- up"
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(pause metrics-server registry faas-python-runner faas-node-runner faas-gateway faas-operator)
for w in "${wanted[@]}"; do
  case $w in
    pause) build_pause ;;
    metrics-server) build_metrics_server ;;
    registry) build_registry ;;
    faas-python-runner) build_python_runner ;;
    faas-node-runner) build_node_app faas-node-runner:latest runner-node --expose 8080 \
      --env FAAS_PORT=8080 --env FAAS_HOST=0.0.0.0 --env FAAS_CODE_DIR=/code ;;
    faas-gateway) build_node_app faas-gateway:latest kube-backend --expose 8000 ;;
    faas-operator) build_node_app faas-operator:latest operator ;;
    *) die "unknown image $w" ;;
  esac
done
