#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, from host processes: etcd,
# kube-apiserver, controller-manager, scheduler, containerd, kubelet and
# kube-proxy, built from pinned Go modules (see versions.sh) and Debian packages.
#   cluster.sh up           build/cache binaries and images, start everything,
#                           wait for the node, metrics-server and the package registry; prints the kubeconfig path
#   cluster.sh down [--purge]  stop and remove all of it (--purge: also cached images, certs, logs)
#   cluster.sh status       what runs, the node, the system pods
#   cluster.sh load-images [image ...]  rebuild and import the project's images
#   cluster.sh kubeconfig   print the admin kubeconfig's path
#   cluster.sh kubectl ...  run the cluster's kubectl against it
# State, PID files and logs: $FAAS_CLUSTER_DIR (default /var/lib/faas-cluster).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=pki.sh
. "$here/pki.sh"
# shellcheck source=up.sh
. "$here/up.sh"
# shellcheck source=down.sh
. "$here/down.sh"

cluster_status() {
  local name state rc=0
  for name in "${DAEMONS[@]}"; do
    if pid_alive "$name"; then state="running (pid $(cat "$RUN/$name.pid"))"; else state="stopped"; rc=1; fi
    printf '%-24s %s\n' "$name" "$state"
  done
  if [ $rc = 0 ]; then
    kc get nodes -o wide || rc=1
    kc get pods -A -o wide || rc=1
  fi
  return $rc
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  up) cluster_up ;;
  down) cluster_down "${1:-}" ;;
  status) cluster_status ;;
  load-images)
    [ "$(id -u)" = 0 ] || die "load-images needs root (containerd's socket)"
    "$here/build-images.sh" "$@" ;;
  kubeconfig)
    [ -s "$ADMIN_KUBECONFIG" ] || die "no cluster yet: npm run cluster -- up"
    echo "$ADMIN_KUBECONFIG" ;;
  kubectl) kc "$@" ;;
  *)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$cmd" ] || [ "$cmd" = help ] || [ "$cmd" = -h ] || exit 2 ;;
esac
