# Generates the cluster's CA, certificates, service-account keys and
# kubeconfigs with openssl (sourced by up.sh). Kept across `down` so a warm
# `up` reuses them; `down --purge` removes them.

# issue_cert NAME CN ORG USAGE [SANS]: a P-256 key and a certificate signed by
# the CA in $PKI/$ca (default ca). USAGE is serverAuth, clientAuth or both.
issue_cert() {
  local name=$1 cn=$2 org=$3 usage=$4 sans=${5:-} ca=${CA_NAME:-ca}
  [ -s "$PKI/$name.crt" ] && return 0
  local subj="/CN=$cn"
  [ -n "$org" ] && subj="/O=$org$subj"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } > "$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

issue_ca() {
  local name=$1 cn=$2
  [ -s "$PKI/$name.crt" ] && return 0
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/$name.key" -subj "/CN=$cn" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/$name.crt" 2>/dev/null
}

# write_kubeconfig FILE USER CERTNAME
write_kubeconfig() {
  local file=$1 user=$2 cert=$3
  [ -s "$file" ] && return 0
  local k=("$KUBECTL" --kubeconfig "$file.tmp")
  "${k[@]}" config set-cluster faas --server="$APISERVER_URL" --certificate-authority="$PKI/ca.crt" --embed-certs=true >/dev/null
  "${k[@]}" config set-credentials "$user" --client-certificate="$PKI/$cert.crt" --client-key="$PKI/$cert.key" --embed-certs=true >/dev/null
  "${k[@]}" config set-context faas --cluster=faas --user="$user" >/dev/null
  "${k[@]}" config use-context faas >/dev/null
  mv "$file.tmp" "$file"
}

generate_pki() {
  mkdir -p "$PKI" "$CFG"
  chmod 700 "$PKI"
  issue_ca ca faas-cluster-ca
  issue_ca front-proxy-ca faas-cluster-front-proxy-ca
  issue_cert kube-apiserver kube-apiserver "" serverAuth \
    "IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  issue_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
  issue_cert admin faas-admin system:masters clientAuth
  issue_cert kube-controller-manager system:kube-controller-manager "" clientAuth
  issue_cert kube-scheduler system:kube-scheduler "" clientAuth
  issue_cert kube-proxy system:kube-proxy "" clientAuth
  issue_cert kube-router system:kube-router "" clientAuth
  issue_cert kubelet-client "system:node:$NODE_NAME" system:nodes clientAuth
  issue_cert kubelet-serving "$NODE_NAME" "" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
  CA_NAME=front-proxy-ca issue_cert front-proxy-client front-proxy-client "" clientAuth
  if [ ! -s "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  write_kubeconfig "$ADMIN_KUBECONFIG" faas-admin admin
  write_kubeconfig "$CFG/controller-manager.kubeconfig" system:kube-controller-manager kube-controller-manager
  write_kubeconfig "$CFG/scheduler.kubeconfig" system:kube-scheduler kube-scheduler
  write_kubeconfig "$CFG/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  write_kubeconfig "$CFG/kube-router.kubeconfig" system:kube-router kube-router
  write_kubeconfig "$CFG/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet-client
}
