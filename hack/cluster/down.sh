# `cluster.sh down [--purge]` (sourced by cluster.sh after lib.sh).
# Stops only what `up` recorded in PID files, then removes what the cluster
# left behind: containers and their shims, mounts under $D, the pods' network
# namespaces, the bridge, the iptables chains, ipsets and nf_tables table,
# cgroups, and restores sysctls.

CLUSTER_CHAIN_RE='^(KUBE-|CNI-|FAAS-)'

# kill_containers: every task in containerd's k8s.io namespace, then the shims
# (by the PID files they keep under containerd's state dir).
kill_containers() {
  local ids id f
  if [ -S "$CONTAINERD_SOCK" ] && pid_alive containerd; then
    ids=$(ctr_ tasks ls -q 2>/dev/null || true)
    for id in $ids; do ctr_ tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    for id in $ids; do
      for _ in $(seq 1 50); do
        grep -qx "$id" <<<"$(ctr_ tasks ls -q 2>/dev/null)" || break
        ctr_ tasks delete -f "$id" >/dev/null 2>&1 && break
        sleep 0.1
      done
    done
    for id in $(ctr_ containers ls -q 2>/dev/null || true); do ctr_ containers delete "$id" >/dev/null 2>&1 || true; done
  fi
  local taskdir=$D/containerd/state/io.containerd.runtime.v2.task
  if [ -d "$taskdir" ]; then
    for f in "$taskdir"/*/*/init.pid "$taskdir"/*/*/shim.pid; do
      [ -f "$f" ] && stop_pid "$f" "$(basename "$f" .pid) of container $(basename "$(dirname "$f")" | cut -c1-12)"
    done
  fi
  return 0
}

# netns of the pods: the paths in the sandboxes' specs are gone with the
# containers, so take the cni-* namespaces that were not there when found.
# `ip netns add` bind-mounts /run/netns on itself (shared); namespaces mounted
# before that are hidden under the bind, so unmount it once it is empty and
# look again.
remove_netns() {
  local pass ns
  for pass in 1 2 3; do
    for ns in /run/netns/cni-*; do
      [ -e "$ns" ] || continue
      grep -qx "netns $(basename "$ns")" "$FOUND/snapshot" 2>/dev/null && continue
      for _ in 1 2 3 4; do
        mountpoint -q "$ns" || break
        umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
      done
      rm -f "$ns" && log "removed network namespace $(basename "$ns")"
    done
    grep -q "^mount /run/netns " "$FOUND/snapshot" 2>/dev/null && break
    mountpoint -q /run/netns || break
    # Not lazily: busy means namespaces of others are mounted inside it.
    umount /run/netns 2>/dev/null || break
  done
  if [ ! -e "$FOUND/had-netns-dir" ] && [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ] && ! mountpoint -q /run/netns; then
    rmdir /run/netns 2>/dev/null || true
  fi
  return 0
}

unmount_all() {
  local m n=0
  # Deepest first; lazily if something still holds a mount.
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    n=$((n + 1))
  done < <(awk -v d="$D/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r)
  [ "$n" -gt 0 ] && log "unmounted $n mounts under $D"
  return 0
}

remove_interfaces() {
  local v
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip link del "$v" 2>/dev/null || true
    done
    ip link del "$BRIDGE"
    log "removed bridge $BRIDGE and its veths"
  fi
  # (grep on a captured string: with pipefail, `ip | grep -q` can fail on SIGPIPE)
  if grep -q " $NODE_IP/32 " <<<"$(ip -o addr show dev lo)"; then
    ip addr del "$NODE_IP/32" dev lo
    log "removed node address $NODE_IP from lo"
  fi
}

# clean_iptables: kube-proxy's own cleanup, then any KUBE-/CNI-/FAAS- chain
# (and the rules that jump to it) that was not there when the machine was found.
clean_iptables() {
  "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  local cmd table chain rule
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null || continue
    for table in filter nat mangle raw; do
      local chains=()
      while read -r chain; do
        grep -qx "$cmd $table chain $chain" "$FOUND/snapshot" 2>/dev/null || chains+=("$chain")
      done < <("$cmd" -t "$table" -S 2>/dev/null | awk '$1 == "-N" { print $2 }' | grep -E "$CLUSTER_CHAIN_RE" || true)
      [ ${#chains[@]} -eq 0 ] && continue
      for chain in "${chains[@]}"; do
        # Rules elsewhere that jump to it.
        while read -r rule; do
          eval "$cmd -t $table ${rule/-A /-D }" 2>/dev/null || true
        done < <("$cmd" -t "$table" -S 2>/dev/null | grep -E -- "^-A .* -j $chain( |\$)" || true)
      done
      for chain in "${chains[@]}"; do "$cmd" -t "$table" -F "$chain" 2>/dev/null || true; done
      for chain in "${chains[@]}"; do "$cmd" -t "$table" -X "$chain" 2>/dev/null || true; done
      log "removed ${#chains[@]} $cmd chains from table $table"
    done
  done
  command -v nft >/dev/null || return 0
  local family
  for family in ip ip6; do
    if nft list table "$family" kube-proxy >/dev/null 2>&1; then nft delete table "$family" kube-proxy || true; fi
  done
  if nft list table ip "$NFT_TABLE" >/dev/null 2>&1; then
    nft delete table ip "$NFT_TABLE" && log "removed nf_tables table ip $NFT_TABLE"
  fi
  # With iptables-nft, the first rule in a table creates that nf_tables table;
  # drop the ones the cluster brought into being once they hold no rules again.
  for cmd in iptables ip6tables; do
    family=ip; [ "$cmd" = ip6tables ] && family=ip6
    for table in filter nat mangle raw; do
      nft list table "$family" "$table" >/dev/null 2>&1 || continue
      grep -qx "nft table $family $table" "$FOUND/snapshot" 2>/dev/null && continue
      if ! grep -qv -- '^-P [A-Z]* ACCEPT$' <<<"$("$cmd" -t "$table" -S 2>/dev/null)"; then
        nft delete table "$family" "$table" && log "removed empty nf_tables table $family $table"
      fi
    done
  done
}

# remove_ipsets: kube-router's sets (KUBE-SRC-*, KUBE-DST-*, ... and their
# inet6: twins) that were not there when found; after clean_iptables, since a
# set still referenced by a rule cannot be destroyed.
remove_ipsets() {
  command -v ipset >/dev/null || return 0
  local set n=0
  while read -r set; do
    [ -n "$set" ] || continue
    grep -qx "ipset $set" "$FOUND/snapshot" 2>/dev/null && continue
    ipset destroy "$set" 2>/dev/null && n=$((n + 1)) || log "could not destroy ipset $set"
  done < <(ipset list -n 2>/dev/null | grep -E '^(inet6:)?(KUBE-|kube-router)' || true)
  [ "$n" -gt 0 ] && log "removed $n ipsets"
  return 0
}

remove_cgroups() {
  local c n=0
  for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice /sys/fs/cgroup/unified/kubepods; do
    [ -d "$c" ] || continue
    find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ -d "$c" ] && log "could not remove cgroup $c (processes still in it?)" || n=$((n + 1))
  done
  [ "$n" -gt 0 ] && log "removed $n kubepods cgroup trees"
  return 0
}

restore_sysctls() {
  [ -f "$FOUND/sysctls" ] || return 0
  local line key val
  while IFS= read -r line; do
    key=${line%%=*}; val=${line#*=}
    [ "$val" = absent ] && continue
    [ "$(sysctl -n "$key" 2>/dev/null)" = "$val" ] || sysctl -qw "$key=$val" 2>/dev/null || log "could not restore $key=$val"
  done < "$FOUND/sysctls"
}

remove_host_dirs() {
  local f
  if [ -d /var/log/containers ]; then
    for f in /var/log/containers/*; do
      [ -L "$f" ] && case $(readlink "$f") in "$D"/*) rm -f "$f" ;; esac
    done
    [ -e "$FOUND/had-var-log-containers" ] || rmdir /var/log/containers 2>/dev/null || true
  fi
  if [ ! -e "$FOUND/had-run-containerd" ] && [ -d /run/containerd ]; then
    rmdir /run/containerd/s /run/containerd 2>/dev/null || true
  fi
}

# remove_kubeconfig: takes out of $KUBECONFIG (or ~/.kube/config) what `up`
# put there: the whole file when it holds only this cluster; otherwise the faas
# context, cluster and user, switching back to the context the file had before
# `up` merged into it (kept as <file>.bak-faas).
remove_kubeconfig() {
  local target=${KUBECONFIG:-$HOME/.kube/config}
  target=${target%%:*}
  [ -s "$target" ] && [ -x "$KUBECTL" ] || return 0
  local k=("$KUBECTL" --kubeconfig "$target") clusters current before=""
  clusters=$("${k[@]}" config view -o jsonpath='{.clusters[*].name}' 2>/dev/null) || return 0
  case " $clusters " in *" faas "*) ;; *) return 0 ;; esac
  if [ "$clusters" = faas ]; then
    rm -f "$target"
    log "removed $target (it held only this cluster)"
    return 0
  fi
  current=$("${k[@]}" config current-context 2>/dev/null || true)
  "${k[@]}" config delete-context faas >/dev/null 2>&1 || true
  "${k[@]}" config delete-cluster faas >/dev/null 2>&1 || true
  "${k[@]}" config delete-user faas-admin >/dev/null 2>&1 || true
  if [ "$current" = faas ]; then
    [ -s "$target.bak-faas" ] && before=$("$KUBECTL" --kubeconfig "$target.bak-faas" config current-context 2>/dev/null || true)
    if [ -n "$before" ]; then "${k[@]}" config use-context "$before" >/dev/null 2>&1 || true
    else "${k[@]}" config unset current-context >/dev/null 2>&1 || true; fi
  fi
  log "removed the faas context from $target${before:+ (current context: $before again)}"
}

cluster_down() {
  [ "$(id -u)" = 0 ] || die "down needs root"
  local purge=${1:-}
  [ -d "$D" ] || { log "nothing to stop ($D does not exist)"; return 0; }
  stop_pid "$RUN/kube-router.pid" kube-router
  stop_pid "$RUN/kube-proxy.pid" kube-proxy
  stop_pid "$RUN/kubelet.pid" kubelet
  kill_containers || log "kill_containers failed; continuing"
  local i
  for (( i=${#DAEMONS[@]}-1; i>=0; i-- )); do
    case ${DAEMONS[$i]} in kubelet|kube-proxy|kube-router) continue ;; esac
    stop_pid "$RUN/${DAEMONS[$i]}.pid" "${DAEMONS[$i]}"
  done
  # Cleanup goes on past a failed step; check-clean.sh tells what is left.
  local step
  for step in kill_containers remove_netns unmount_all remove_interfaces clean_iptables \
    remove_ipsets remove_cgroups restore_sysctls remove_host_dirs; do
    "$step" || log "$step failed; continuing"
  done
  # registry-data: the registry's hostPath volume (its PersistentVolume went with etcd).
  rm -rf "$D/etcd" "$D/kubelet" "$D/run" "$D/cni" "$D/pod-logs" "$D/containerd/state" "$D/containerd/opt" \
    "$D/registry-data"
  if [ -d "$FOUND" ]; then rm -rf "$D/found.last"; mv "$FOUND" "$D/found.last"; fi
  if [ "$purge" = --purge ]; then
    find "$D" -mindepth 1 -maxdepth 1 ! -name found.last -exec rm -rf {} +
    log "purged $D (images, certificates, logs)"
  fi
  remove_kubeconfig || log "remove_kubeconfig failed; continuing"
  log "cluster down"
}
