# Sourced by the build scripts. go_build_pinned NAME MODULE_DIR PACKAGE LDFLAGS OUT:
# a static build of PACKAGE from a module of our own (MODULE_DIR's go.mod and
# go.sum, committed, read-only), so it is the same everywhere; written to OUT
# through a temporary file, so OUT is there whole or not at all.
go_build_pinned() {
  local name=$1 dir=$2 pkg=$3 ldflags=$4 out=$5 t0
  printf '[build] building %s (dependencies from %s/go.mod)\n' "$name" "$dir" >&2
  mkdir -p "$(dirname "$out")"
  t0=$(date +%s)
  ( cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg" >&2 )
  mv "$out.tmp" "$out"
  printf '[build] built %s in %ss\n' "$name" "$(( $(date +%s) - t0 ))" >&2
}
