# Shared settings and helpers of the test cluster's scripts (sourced, not run).
# Everything the cluster owns lives under $FAAS_CLUSTER_DIR; nothing is started
# or removed that is not recorded there (PID files, the snapshot of the machine
# as it was found).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
REPO_ROOT=$(cd "$here/../.." && pwd)

FAAS_CLUSTER_DIR=${FAAS_CLUSTER_DIR:-/var/lib/faas-cluster}
D=$FAAS_CLUSTER_DIR
PKI=$D/pki
RUN=$D/run
LOGS=$D/logs
CFG=$D/config
FOUND=$D/found            # the machine as `up` first found it; `down` restores it
CONTAINERD_SOCK=$RUN/containerd.sock

NODE_NAME=faas-node
BRIDGE=faas0              # the only interface the cluster adds (plus pod veths)
NODE_IP=10.245.0.1        # node address, on lo: exists on this machine only
# nf_tables table (nft) with the rules that keep pod traffic on this machine.
NFT_TABLE=faas-cluster
POD_CIDR=10.244.0.0/24
POD_GATEWAY=10.244.0.1
SERVICE_CIDR=10.96.0.0/24
KUBERNETES_SERVICE_IP=10.96.0.1
APISERVER_PORT=6443
ETCD_CLIENT_PORT=2379
ETCD_PEER_PORT=2380
APISERVER_URL=https://$NODE_IP:$APISERVER_PORT
PAUSE_IMAGE=faas.local/pause:1
METRICS_SERVER_IMAGE=faas.local/metrics-server:$METRICS_SERVER_VERSION
REGISTRY_IMAGE=faas.local/registry:$REGISTRY_VERSION
CNI_BIN_DIR=/usr/lib/cni

# Kernel settings the kubelet, kube-proxy or the CNI plugins may change; `up`
# records them once and `down` puts them back.
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables
  net.bridge.bridge-nf-call-ip6tables net.ipv4.conf.all.route_localnet
  vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.netfilter.nf_conntrack_max)

# Daemons in start order; `down` stops them in reverse.
DAEMONS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy kube-router)

KUBECTL=$K8S_BIN/kubectl
ADMIN_KUBECONFIG=$CFG/admin.kubeconfig

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

kc() { "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }
ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# pid_alive NAME: the process recorded in run/NAME.pid is alive and is still
# the program that was started (guards against a recycled PID).
pid_alive() {
  local f=$RUN/$1.pid pid exe
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  [ "$exe" = "$(cat "$RUN/$1.exe" 2>/dev/null)" ]
}

# start_daemon NAME BINARY ARGS...: starts BINARY in its own session with its
# log in logs/NAME.log, unless the recorded one is alive.
start_daemon() {
  local name=$1 bin=$2
  shift 2
  if pid_alive "$name"; then log "$name already running (pid $(cat "$RUN/$name.pid"))"; return 0; fi
  mkdir -p "$RUN" "$LOGS"
  readlink -f "$bin" > "$RUN/$name.exe"
  setsid "$bin" "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
  log "started $name (pid $!, log $LOGS/$name.log)"
}

# stop_pid PIDFILE LABEL: TERM, wait up to 15 s, then KILL.
stop_pid() {
  local f=$1 label=$2 pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 150); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    if [ -d "/proc/$pid" ]; then log "$label (pid $pid) ignored TERM; killing"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
    log "stopped $label (pid $pid)"
  fi
  rm -f "$f"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every second.
wait_for() {
  local secs=$1 what=$2 i
  shift 2
  for i in $(seq 1 "$secs"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  die "timed out after ${secs}s waiting for $what (logs: $LOGS)"
}
