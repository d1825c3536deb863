#!/usr/bin/env bash
# The local world's Kubernetes: kube-apiserver, kube-controller-manager (with its real HPA
# controller), kube-scheduler and kubectl built from k8s.io/kubernetes; etcd built from its Go
# module; kwok for nodes without kubelets. Builds are cached in $OSA_CACHE keyed by version.
#
# usage: kubernetes.sh build|up|status|down
. "$(dirname "$0")/lib.sh"

K8S_BIN=$OSA_CACHE/kubernetes-$K8S_VERSION/bin
KWOK_BIN=$OSA_CACHE/kwok-$KWOK_VERSION/bin
ETCD_BIN=$OSA_CACHE/etcd-$ETCD_VERSION/bin
S=$OSA_STATE/kubernetes
RUN=$S/run
LOGS=$S/log
PKI=$S/pki
KUBECONFIG_ADMIN=$S/admin.kubeconfig
BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

# gen_wrapper DIR: a module that requires k8s.io/kubernetes and re-states its staging replaces
# (a dependency's replace directives are ignored, so `go install k8s.io/kubernetes/...@v` fails).
# The replace list is derived from upstream's go.mod, never typed by hand.
gen_wrapper() {
  local dir=$1 gomod staging godirective minor
  minor=v0.${K8S_VERSION#v1.}
  mkdir -p "$dir"
  gomod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -s "$gomod" ] || die "could not download go.mod of k8s.io/kubernetes@$K8S_VERSION"
  godirective=$(awk '$1=="go"{print $2; exit}' "$gomod")
  staging=$(grep -Eo 'k8s\.io/[A-Za-z0-9._/-]+ => \./staging/src/k8s\.io/[A-Za-z0-9._/-]+' "$gomod" | awk '{print $1}' | sort -u)
  [ -n "$staging" ] || die "no staging replaces found in $gomod"
  {
    echo "module osa.local/k8sbuild"
    echo
    echo "go $godirective"
    echo
    awk '/^godebug \(/{p=1} p{print} p&&/^\)/{p=0; next} !p&&/^godebug [^(]/{print}' "$gomod"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for m in $staging; do printf '\t%s => %s %s\n' "$m" "$m" "$minor"; done
    echo ")"
  } >"$dir/go.mod"
  (cd "$dir" && for b in "${BINS[@]}"; do printf 'k8s.io/kubernetes/cmd/%s@%s ' "$b" "$K8S_VERSION"; done | xargs go get)
}

build_k8s() {
  local work=$OSA_CACHE/kubernetes-$K8S_VERSION/module v maj min ldf b
  mkdir -p "$K8S_BIN"
  [ -f "$work/go.sum" ] || gen_wrapper "$work"
  v=${K8S_VERSION#v}; maj=${v%%.*}; min=${v#*.}; min=${min%%.*}
  ldf="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$maj -X $p.gitMinor=$min -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  for b in "${BINS[@]}"; do
    [ -x "$K8S_BIN/$b" ] && continue
    echo "building $b $K8S_VERSION"
    (cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldf" -o "$K8S_BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b")
    mv "$K8S_BIN/$b.tmp" "$K8S_BIN/$b"
  done
}

build_kwok() {
  mkdir -p "$KWOK_BIN"
  CGO_ENABLED=0 GOBIN="$KWOK_BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

# build_etcd: etcd's server from its Go module, through a module of our own whose main calls
# etcdmain (the etcd repository's root module has replace directives, so `go install` of it fails).
build_etcd() {
  local work=$OSA_CACHE/etcd-$ETCD_VERSION/module
  mkdir -p "$work" "$ETCD_BIN"
  cat >"$work/main.go" <<'GO'
// Command etcd runs etcd's server for the local world.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  if [ ! -f "$work/go.mod" ]; then
    (cd "$work" && go mod init osa.local/etcd && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy)
  fi
  (cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ETCD_BIN/etcd.tmp" . && mv "$ETCD_BIN/etcd.tmp" "$ETCD_BIN/etcd")
}

cmd_build() {
  command -v go >/dev/null || die "Go is not installed (see README: a Debian 12 machine with Go)"
  local b missing=0
  for b in "${BINS[@]}"; do [ -x "$K8S_BIN/$b" ] || missing=1; done
  if [ $missing = 1 ]; then
    mkdir -p "$LOGS"
    # ~1,100 CPU-seconds of compiling on a cold Go build cache; seconds when warm.
    with_progress "build Kubernetes $K8S_VERSION (4 binaries, cached in $K8S_BIN)" 660 "$LOGS/build-kubernetes.log" build_k8s
  else
    log "Kubernetes $K8S_VERSION: cached in $K8S_BIN"
  fi
  if [ ! -x "$ETCD_BIN/etcd" ]; then
    mkdir -p "$LOGS"
    with_progress "build etcd $ETCD_VERSION" 150 "$LOGS/build-etcd.log" build_etcd
  else
    log "etcd $ETCD_VERSION: cached in $ETCD_BIN"
  fi
  if [ ! -x "$KWOK_BIN/kwok" ]; then
    mkdir -p "$LOGS"
    with_progress "build kwok $KWOK_VERSION" 240 "$LOGS/build-kwok.log" build_kwok
  else
    log "kwok $KWOK_VERSION: cached in $KWOK_BIN"
  fi
}

# kwok needs Stage objects in its config; take them from the kwok module itself.
gen_kwok_config() {
  local dir f first=1
  dir=$(cd /tmp && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -d "$dir/kustomize/stage" ] || die "kwok module not found for $KWOK_VERSION"
  for f in "$dir"/kustomize/stage/node/fast/node-initialize.yaml \
    "$dir"/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    "$dir"/kustomize/stage/pod/fast/pod-*.yaml; do
    [ $first = 1 ] || echo "---"
    first=0
    grep -v '^---$' "$f"
  done
}

# make_pki: cluster CA, front-proxy CA, serving and client certificates, SA keys (openssl only).
make_pki() {
  # A PKI made before the Service range moved lacks the kubernetes Service's address: remade
  # (only while the API server is down; etcd starts empty with it anyway).
  if [ -f "$PKI/admin.crt" ] && ! openssl x509 -in "$PKI/apiserver.crt" -noout -text | grep -q "IP Address:$KUBERNETES_SVC_IP"; then
    pid_alive "$RUN" kube-apiserver || rm -rf "$PKI"
  fi
  if [ ! -f "$PKI/admin.crt" ]; then
    mkdir -p "$PKI"
  (
    cd "$PKI"
    ca() { openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.crt" -days 3650 -subj "/CN=$2" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null; }
    leaf() { sign_leaf "$@"; } # name ca subject eku [san], in $PKI
    ca ca world-kubernetes-ca
    ca front-proxy-ca world-front-proxy-ca
    leaf apiserver ca "/CN=kube-apiserver" serverAuth \
      "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$KUBERNETES_SVC_IP,IP:$HOST_IP"
    leaf apiserver-kubelet-client ca "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
    leaf admin ca "/O=system:masters/CN=kubernetes-admin" clientAuth
    leaf controller-manager ca "/CN=system:kube-controller-manager" clientAuth
    leaf scheduler ca "/CN=system:kube-scheduler" clientAuth
    leaf front-proxy-client front-proxy-ca "/CN=front-proxy-client" clientAuth
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
    log "pki: written to $PKI"
  fi
  local f user cert
  for f in admin:kubernetes-admin:admin controller-manager:system:kube-controller-manager:controller-manager \
    scheduler:system:kube-scheduler:scheduler; do
    cert=${f##*:}; user=${f#*:}; user=${user%:*}
    kubeconfig_yaml "$user" "$PKI/$cert.crt" "$PKI/$cert.key" >"$S/${f%%:*}.kubeconfig"
  done
}

cmd_up() {
  apt_install openssl curl iproute2 >>"$OSA_STATE/apt.log" 2>&1 || die "apt-get install etcd-server failed (see $OSA_STATE/apt.log)"
  cmd_build
  mkdir -p "$RUN" "$LOGS"
  ensure_lo_addr "$HOST_IP"
  ensure_lo_addr "$NODE_IP"
  make_pki
  [ -s "$S/kwok.yaml" ] || gen_kwok_config >"$S/kwok.yaml"
  # A world that comes up starts from an empty cluster: objects a killed run left behind
  # (Deployments, HPAs, APIServices, nodes) would otherwise confuse the next one.
  pid_alive "$RUN" etcd || rm -rf "$S/etcd"
  start_bg "$RUN" "$LOGS" etcd "$ETCD_BIN/etcd" --name world --data-dir "$S/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster world=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    --quota-backend-bytes 2147483648 --snapshot-count 10000
  wait_ok etcd http://127.0.0.1:2379/health 60 "$RUN"
  start_bg "$RUN" "$LOGS" kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:2379 \
    --bind-address="$HOST_IP" --secure-port=6443 --advertise-address="$HOST_IP" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --enable-aggregator-routing=true
  # Ready, not just listening: RBAC bootstrap must be done before the controllers start.
  wait_ok kube-apiserver "https://$HOST_IP:6443/readyz" 120 "$RUN" --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key"
  # The HPA controller runs every 5 s and scales down after 30 s of stability so tests and the demo
  # see whole cycles in minutes (production defaults: 15 s and 5 min).
  start_bg "$RUN" "$LOGS" kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$S/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$S/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$S/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10257 --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --horizontal-pod-autoscaler-sync-period=5s \
    --horizontal-pod-autoscaler-downscale-stabilization=30s
  start_bg "$RUN" "$LOGS" kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig="$S/scheduler.kubeconfig" \
    --authentication-kubeconfig="$S/scheduler.kubeconfig" \
    --authorization-kubeconfig="$S/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false
  # kwok manages only nodes annotated kwok.x-k8s.io/node=fake; pod IPs come from POD_CIDR, which
  # the pod sandboxes give their network namespaces.
  start_bg "$RUN" "$LOGS" kwok "$KWOK_BIN/kwok" \
    --kubeconfig="$KUBECONFIG_ADMIN" --config="$S/kwok.yaml" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip="$NODE_IP" --cidr="$POD_CIDR" --node-lease-duration-seconds=40 \
    --server-address=127.0.0.1:10247
  wait_ok kube-controller-manager https://127.0.0.1:10257/healthz 120 "$RUN" -k
  wait_ok kube-scheduler https://127.0.0.1:10259/healthz 120 "$RUN" -k
  log "kubernetes $K8S_VERSION: up (KUBECONFIG=$KUBECONFIG_ADMIN)"
}

SERVICES=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

cmd_status() { print_status "$RUN" "${SERVICES[@]}"; }

cmd_down() {
  local i
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do stop_pid "$RUN" "${SERVICES[i]}"; done
}

case ${1:-} in
  build) cmd_build ;;
  up) cmd_up ;;
  status) cmd_status ;;
  down) cmd_down ;;
  wipe) cmd_down; rm -rf "$S" ;;
  *) echo "usage: $0 build|up|status|down|wipe" >&2; exit 2 ;;
esac
