# Pinned versions of the test cluster's parts; the cache is keyed by them.
K8S_VERSION=v1.34.4
K8S_MINOR=34
K8S_STAGING_VERSION=v0.34.4
ETCD_VERSION=v3.6.16
METRICS_SERVER_VERSION=v0.8.0
# The NetworkPolicy engine, built from kube-router/go.mod (which pins patched
# dependencies); its cache is keyed by the version and by that go.sum.
KUBE_ROUTER_VERSION=v2.1.0
# The package registry (CNCF Distribution), built from registry/go.mod; cache
# keyed the same way.
REGISTRY_VERSION=v3.1.2
FAAS_CACHE=${FAAS_CACHE:-$HOME/.cache/faas}
K8S_BIN=$FAAS_CACHE/k8s/$K8S_VERSION-etcd$ETCD_VERSION-ms$METRICS_SERVER_VERSION/bin
KUBE_ROUTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kube-router
KUBE_ROUTER_BIN=$FAAS_CACHE/kube-router/$KUBE_ROUTER_VERSION-$(sha256sum "$KUBE_ROUTER_DIR/go.sum" | cut -c1-12)/bin
REGISTRY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/registry
REGISTRY_BIN=$FAAS_CACHE/registry/$REGISTRY_VERSION-$(sha256sum "$REGISTRY_DIR/go.sum" | cut -c1-12)/bin
