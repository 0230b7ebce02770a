#!/usr/bin/env bash
# Prints the parts of the machine's state that the test cluster touches, one
# item a line, sorted: network namespaces, interfaces, mounts, iptables chains
# and rules, nf_tables tables, ipsets, the cluster's processes, kubepods
# cgroups, listening cluster ports.
# `up` records it before starting; check-clean.sh compares after `down`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
{
  for ns in /var/run/netns/*; do [ -e "$ns" ] && echo "netns $(basename "$ns")"; done
  ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print "iface " $2 }'
  ip -o addr show 2>/dev/null | awk '{ print "addr " $2 " " $4 }'
  ip -o route show table all 2>/dev/null | sed 's/^/route /'
  awk '{ print "mount " $2 " " $3 }' /proc/self/mounts
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null || continue
    for table in filter nat mangle raw; do
      "$cmd" -t "$table" -S 2>/dev/null | while IFS= read -r line; do
        case $line in
          "-N "*) echo "$cmd $table chain ${line#-N }" ;;
          "-P "*) ;;
          *) echo "$cmd $table rule $line" ;;
        esac
      done
    done
  done
  command -v nft >/dev/null && { nft list tables 2>/dev/null | sed 's/^/nft /' || true; }
  command -v ipset >/dev/null && { ipset list -n 2>/dev/null | sed 's/^/ipset /' || true; }
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    case $exe in
      "$K8S_BIN"/*|"$KUBE_ROUTER_BIN"/*|*/containerd|*/containerd-shim*|*/runc) echo "process $exe" ;;
      *) grep -q kubepods "$p/cgroup" 2>/dev/null && echo "process (in kubepods) $exe" ;;
    esac
  done
  for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do [ -d "$c" ] && echo "cgroup $c"; done
  ss -ltnH 2>/dev/null | awk '{ print $4 }' | grep -E ':(6443|2379|2380|10248|10249|10250|10256|10257|10259)$' | sed 's/^/listen /' || true
  true
} | sort -u
