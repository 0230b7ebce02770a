#!/usr/bin/env bash
# Proves that `cluster.sh down` left the machine as `up` found it: compares the
# state now with the snapshot `up` took, and fails on anything the cluster adds
# (processes, mounts, network namespaces, interfaces, iptables chains or rules,
# nf_tables tables, ipsets, kubepods cgroups, listening ports) or any sysctl it did not put back.
# Other lines that changed (other work on the machine) are shown, not failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

found=$D/found.last
ours="$D|$BRIDGE|veth|cni-|KUBE-|CNI-|FAAS-|kube-proxy|kube-router|10\\.244\\.|10\\.245\\.|10\\.96\\.|kubepods|^process |^listen |^nft |^addr lo "
now=$(mktemp)
trap 'rm -f "$now"' EXIT
"$here/snapshot.sh" > "$now"
fail=0

if [ -f "$found/snapshot" ]; then
  added=$(comm -13 "$found/snapshot" "$now" || true)
  removed=$(comm -23 "$found/snapshot" "$now" || true)
  bad=$(grep -E "$ours" <<<"$added" || true)
  other=$(grep -vE "$ours" <<<"$added" || true)
  if [ -n "$bad" ]; then echo "check-clean: left behind by the cluster:"; sed 's/^/  + /' <<<"$bad"; fail=1; fi
  if [ -n "$other" ]; then echo "check-clean: note, changed meanwhile (not the cluster's):"; sed 's/^/  + /' <<<"$other"; fi
  if [ -n "$removed" ]; then echo "check-clean: note, gone since up:"; sed 's/^/  - /' <<<"$removed"; fi
else
  echo "check-clean: no snapshot from up in $found; checking absolute conditions only"
  bad=$(grep -E "$ours" "$now" || true)
  if [ -n "$bad" ]; then echo "check-clean: cluster leftovers:"; sed 's/^/  + /' <<<"$bad"; fail=1; fi
fi

if [ -f "$found/sysctls" ]; then
  while IFS= read -r line; do
    key=${line%%=*}; want=${line#*=}
    [ "$want" = absent ] && continue
    got=$(sysctl -n "$key" 2>/dev/null || echo absent)
    if [ "$got" != "$want" ]; then echo "check-clean: sysctl $key is $got, was $want"; fail=1; fi
  done < "$found/sysctls"
fi

if [ "$fail" = 0 ]; then echo "check-clean: ok, the machine is as the cluster found it"; fi
exit "$fail"
