# `cluster.sh up` (sourced by cluster.sh after lib.sh and pki.sh).
# shellcheck shell=bash disable=SC2154  # $here and the settings come from lib.sh

ensure_host_packages() {
  local need=() p
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  [ -x "$CNI_BIN_DIR/bridge" ] || need+=(containernetworking-plugins)
  command -v iptables >/dev/null || need+=(iptables)
  command -v ipset >/dev/null || need+=(ipset)
  command -v nft >/dev/null || need+=(nftables)
  command -v conntrack >/dev/null || need+=(conntrack)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v openssl >/dev/null || need+=(openssl)
  command -v gcc >/dev/null && [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(gcc libc6-dev)
  command -v python3 >/dev/null || need+=(python3)
  command -v ip >/dev/null || need+=(iproute2)
  command -v curl >/dev/null || need+=(curl)
  [ ${#need[@]} -eq 0 ] && return 0
  log "installing from Debian: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${need[@]}" >&2; then
    apt-get update >&2
    apt-get install -y --no-install-recommends "${need[@]}" >&2
  fi
  for p in containerd runc; do
    command -v "$p" >/dev/null || die "$p is still missing after apt-get install"
  done
}

# record_found_state: what the machine looked like before the cluster, taken
# once (while nothing of the cluster runs) and used by `down` and check-clean.sh.
record_found_state() {
  [ -f "$FOUND/complete" ] && return 0
  mkdir -p "$FOUND"
  local s
  for s in "${SYSCTLS[@]}"; do
    printf '%s=%s\n' "$s" "$(sysctl -n "$s" 2>/dev/null || echo absent)"
  done > "$FOUND/sysctls"
  "$here/snapshot.sh" > "$FOUND/snapshot"
  [ -d /var/log/containers ] && touch "$FOUND/had-var-log-containers"
  [ -d /run/containerd ] && touch "$FOUND/had-run-containerd"
  [ -d /var/run/netns ] && touch "$FOUND/had-netns-dir"
  touch "$FOUND/complete"
}

# write_if_changed FILE < content: kube-proxy exits when its config file is
# written, so a repeated `up` must leave unchanged files alone.
write_if_changed() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat > "$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

write_configs() {
  mkdir -p "$CFG" "$D/cni/net.d" "$D/cni/ipam" "$D/containerd" "$D/kubelet" "$D/pod-logs"
  # Pods get no resolver: there is no cluster DNS and no upstream they may reach.
  echo "nameserver 127.0.0.1" | write_if_changed "$CFG/resolv.conf"
  write_if_changed "$D/cni/net.d/10-faas.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "faas",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$D/cni/ipam",
        "ranges": [[{ "subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
JSON
  write_if_changed "$CFG/containerd.toml" <<TOML
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # No CAP_SYS_RESOURCE here: a negative oom_score_adj would be refused.
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$D/cni/net.d"
    max_conf_num = 1
TOML
  write_if_changed "$CFG/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $PKI/ca.crt }
authorization: { mode: Webhook }
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
# cgroups v1 and no systemd on this kind of machine.
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
clusterDomain: cluster.local
resolvConf: $CFG/resolv.conf
podLogsDir: $D/pod-logs
failSwapOn: false
protectKernelDefaults: false
# No registry can pull an image back: never collect images.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: { memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%", nodefs.inodesFree: "2%" }
serializeImagePulls: false
maxPods: 110
rotateCertificates: false
YAML
  write_if_changed "$CFG/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: { kubeconfig: $CFG/kube-proxy.kubeconfig }
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
iptables: { localhostNodePorts: false, masqueradeAll: false, syncPeriod: 30s, minSyncPeriod: 1s }
# Zero: leave the machine's conntrack settings as they are.
conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s }
YAML
}

# setup_network: the node address on lo (the CNI bridge plugin allows one IPv4
# address on its bridge), the pods' bridge with their gateway, and the service
# range routed to the bridge, so nothing addressed to the cluster is routed out
# of the machine; rules that keep pod traffic on the bridge; and a FORWARD chain
# that accepts pod-to-pod traffic once the NetworkPolicy engine has passed it.
#
# The rejects are in an nf_tables table of their own, hooked before iptables'
# filter table: kube-router puts its chain first in FORWARD and ACCEPTs there
# whatever NetworkPolicies allow, which would otherwise skip any iptables rule
# after it. A packet must pass every table's hook, so these rejects hold
# whatever iptables accepts.
setup_network() {
  ip addr replace "$NODE_IP/32" dev lo
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    log "created bridge $BRIDGE"
  fi
  sysctl -qw "net.ipv6.conf.$BRIDGE.disable_ipv6=1" || true
  ip addr del "$NODE_IP/32" dev "$BRIDGE" 2>/dev/null || true
  ip addr replace "$POD_GATEWAY/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  nft -f - <<NFT
table ip $NFT_TABLE
delete table ip $NFT_TABLE
table ip $NFT_TABLE {
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    ip saddr $POD_CIDR oifname != "$BRIDGE" counter reject comment "faas-cluster: pods stay on this machine"
    ip daddr $POD_CIDR iifname != "$BRIDGE" counter reject comment "faas-cluster: pods are not reachable from outside"
  }
}
NFT
  if ! iptables -S FAAS-FORWARD >/dev/null 2>&1; then
    iptables -N FAAS-FORWARD
    iptables -A FAAS-FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT -m comment --comment "faas-cluster: pod to pod"
  fi
  iptables -C FORWARD -j FAAS-FORWARD 2>/dev/null || iptables -I FORWARD 1 -j FAAS-FORWARD
}

start_etcd() {
  mkdir -p "$D/etcd"
  chmod 700 "$D/etcd"
  start_daemon etcd "$K8S_BIN/etcd" --name faas --data-dir "$D/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "faas=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
    --unsafe-no-fsync --quota-backend-bytes 2147483648 --log-level warn
  wait_for 60 "etcd health" curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health"
}

start_control_plane() {
  start_daemon kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/kube-apiserver.crt" --tls-private-key-file "$PKI/kube-apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged=true \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-extra-headers-prefix X-Remote-Extra- --requestheader-group-headers X-Remote-Group \
    --requestheader-username-headers X-Remote-User \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --enable-aggregator-routing=true --profiling=false --v=1
  wait_for 120 "kube-apiserver /readyz" kc get --raw /readyz
  start_daemon kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$CFG/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$CFG/controller-manager.kubeconfig" --authorization-kubeconfig "$CFG/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
    --allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" --horizontal-pod-autoscaler-sync-period 10s \
    --profiling=false --v=1
  start_daemon kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$CFG/scheduler.kubeconfig" \
    --authentication-kubeconfig "$CFG/scheduler.kubeconfig" --authorization-kubeconfig "$CFG/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v=1
}

start_containerd() {
  start_daemon containerd "$(command -v containerd)" --config "$CFG/containerd.toml"
  wait_for 60 "containerd" ctr --address "$CONTAINERD_SOCK" version
}

start_node() {
  start_daemon kubelet "$K8S_BIN/kubelet" --config "$CFG/kubelet.yaml" --kubeconfig "$CFG/kubelet.kubeconfig" \
    --root-dir "$D/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1
  start_daemon kube-proxy "$K8S_BIN/kube-proxy" --config "$CFG/kube-proxy.yaml" --v=1
  wait_for 120 "node $NODE_NAME to register" kc get node "$NODE_NAME"
  kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=180s >/dev/null \
    || die "node $NODE_NAME not Ready (logs: $LOGS/kubelet.log)"
  log "node $NODE_NAME is Ready"
}

# start_policy_engine: kube-router's NetworkPolicy controller only (no routing,
# no service proxy: the bridge and kube-proxy do those), as a host process with
# its own read-only identity. It needs the node object, so it starts after the
# node registered; ready once its chains are hooked into FORWARD.
# No health or metrics port: nothing of it listens.
start_policy_engine() {
  kc apply -f "$here/manifests/kube-router-rbac.yaml" >/dev/null
  start_daemon kube-router "$KUBE_ROUTER_BIN/kube-router" \
    --run-firewall=true --run-router=false --run-service-proxy=false --run-loadbalancer=false \
    --kubeconfig "$CFG/kube-router.kubeconfig" --hostname-override "$NODE_NAME" \
    --service-cluster-ip-range "$SERVICE_CIDR" --enable-ipv4=true --enable-ipv6=false \
    --health-port=0 --metrics-port=0 --iptables-sync-period=5m --v=1
  wait_for 120 "kube-router's chains in FORWARD" bash -c \
    'iptables -S FORWARD | grep -q -- "-j KUBE-ROUTER-FORWARD" && iptables -S KUBE-ROUTER-FORWARD | grep -q "0x20000/0x20000 -j ACCEPT"'
  log "kube-router enforces NetworkPolicies"
}

deploy_metrics_server() {
  sed -e "s#@IMAGE@#$METRICS_SERVER_IMAGE#" "$here/manifests/metrics-server.yaml" | kc apply -f - >/dev/null
  kc -n kube-system rollout status deployment/metrics-server --timeout=180s >/dev/null \
    || die "metrics-server did not become available (kubectl -n kube-system describe pod -l k8s-app=metrics-server)"
  wait_for 180 "kubectl top pods -A to answer" kc top pods -A
  log "metrics-server serves metrics"
}

# deploy_registry: the package registry (deploy/registry.yaml) in faas-system.
# Its claim is bound to a hostPath PersistentVolume made here (the cluster has
# no provisioner), a directory under $D owned by the registry's uid; `down`
# removes both. The namespace is made as gateway-deploy.yaml makes it.
REGISTRY_DATA=$D/registry-data
deploy_registry() {
  local manifest=$REPO_ROOT/deploy/registry.yaml phase
  grep -q "image: $REGISTRY_IMAGE\$" "$manifest" || die "$manifest does not name $REGISTRY_IMAGE (hack/cluster/versions.sh)"
  mkdir -p "$REGISTRY_DATA"
  chown 10001:10001 "$REGISTRY_DATA"
  chmod 0750 "$REGISTRY_DATA"
  kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata:
  name: faas-system
  labels:
    pod-security.kubernetes.io/enforce: restricted
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: faas-registry-data
  labels:
    app.kubernetes.io/name: faas-registry
spec:
  capacity: { storage: 2Gi }
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  volumeMode: Filesystem
  hostPath: { path: $REGISTRY_DATA, type: Directory }
  claimRef: { apiVersion: v1, kind: PersistentVolumeClaim, namespace: faas-system, name: faas-registry-data }
YAML
  # A claim deleted and made again: let the volume (and its data) bind to the new one.
  phase=$(kc get pv faas-registry-data -o jsonpath='{.status.phase}')
  if [ "$phase" = Released ]; then
    kc patch pv faas-registry-data --type json \
      -p '[{"op":"remove","path":"/spec/claimRef/uid"},{"op":"remove","path":"/spec/claimRef/resourceVersion"}]' >/dev/null
  fi
  kc apply -f "$manifest" >/dev/null
  kc -n faas-system rollout status deployment/faas-registry --timeout=180s >/dev/null \
    || die "the registry did not become available (kubectl -n faas-system describe pod -l app.kubernetes.io/name=faas-registry)"
  log "registry serves on faas-registry.faas-system:5000 (data in $REGISTRY_DATA)"
}

# install_kubeconfig: $KUBECONFIG or ~/.kube/config; a file that holds other
# clusters is merged into rather than overwritten.
install_kubeconfig() {
  local target=${KUBECONFIG:-$HOME/.kube/config}
  target=${target%%:*}
  mkdir -p "$(dirname "$target")"
  if [ -s "$target" ] \
    && [ "$("$KUBECTL" --kubeconfig "$target" config view -o jsonpath='{.clusters[*].name}' 2>/dev/null)" != "faas" ]; then
    local merged
    merged=$(mktemp)
    KUBECONFIG="$ADMIN_KUBECONFIG:$target" "$KUBECTL" config view --flatten > "$merged"
    "$KUBECTL" --kubeconfig "$merged" config use-context faas >/dev/null
    cp "$target" "$target.bak-faas"
    install -m 600 "$merged" "$target"
    rm -f "$merged"
    log "merged context faas into $target (previous file kept as $target.bak-faas)"
  else
    install -m 600 "$ADMIN_KUBECONFIG" "$target"
  fi
  echo "$target"
}

cluster_up() {
  [ "$(id -u)" = 0 ] || die "up needs root (network, mounts, containerd)"
  local t0=$SECONDS
  ensure_host_packages
  command -v go >/dev/null \
    || { [ -x "$K8S_BIN/kubelet" ] && [ -x "$KUBE_ROUTER_BIN/kube-router" ] && [ -x "$REGISTRY_BIN/registry" ]; } \
    || die "the Go toolchain (1.26 or newer) is needed to build the Kubernetes binaries, kube-router and the registry"
  log "building (or reusing) Kubernetes binaries, kube-router and the registry"
  "$here/build-binaries.sh" >/dev/null
  mkdir -p "$D" "$RUN" "$LOGS"
  record_found_state
  generate_pki
  write_configs
  setup_network
  start_etcd
  start_control_plane
  start_containerd
  CONTAINERD_SOCK=$CONTAINERD_SOCK "$here/build-images.sh"
  start_node
  start_policy_engine
  deploy_metrics_server
  deploy_registry
  local name
  for name in "${DAEMONS[@]}"; do
    pid_alive "$name" || die "$name exited (log: $LOGS/$name.log)"
  done
  local kcfg
  kcfg=$(install_kubeconfig)
  log "cluster up in $((SECONDS - t0))s; kubeconfig: $kcfg"
  echo "$kcfg"
}
