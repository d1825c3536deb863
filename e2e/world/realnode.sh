#!/usr/bin/env bash
# The world's real node: a kubelet with containerd 2.x and runc, beside the kwok nodes. The
# product's own pods run here, from the images `make images` builds (no registry can be reached).
# It is a system node outside every node group. Builds are cached in $OSA_CACHE keyed by version.
#
# This machine's facts shape it: cgroup v1 controllers (so `failCgroupV1: false` and the cgroupfs
# driver; production nodes should be cgroup v2), PID 1 is not systemd, overlayfs, no swap, and a
# negative oom_score_adj is refused (containerd's `restrict_oom_score_adj`).
#
# usage: realnode.sh build|up|images|status|down
. "$(dirname "$0")/lib.sh"

RN=$OSA_STATE/realnode
RUN=$RN/run
LOGS=$RN/log
K8S_BIN=$OSA_CACHE/kubernetes-$K8S_VERSION/bin
CTR_BIN=$OSA_CACHE/containerd-$CONTAINERD_VERSION/bin
RUNC_BIN=$OSA_CACHE/runc-$RUNC_VERSION/bin
PKI=$OSA_STATE/kubernetes/pki
SOCK=$RN/containerd/containerd.sock
CNI_BIN=/usr/lib/cni
MS_BIN=$OSA_CACHE/metrics-server-$METRICS_SERVER_VERSION/bin
SERVICES=(containerd kubelet kube-proxy metrics-server)
# metrics-server listens on the world's address; the metrics.k8s.io APIService reaches it there.
MS_PORT=4443
# The node's label and taint: only pods that ask for it (the product's, in the e2e tests) run
# here; the tests' other pods stay on kwok nodes.
REAL_NODE_LABEL=openstack-autoscaler.io/world-node

build_containerd() {
  mkdir -p "$CTR_BIN"
  CGO_ENABLED=0 GOBIN="$CTR_BIN" go install -trimpath -ldflags "-s -w" -tags no_btrfs \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
}

build_runc() {
  mkdir -p "$RUNC_BIN"
  CGO_ENABLED=1 GOBIN="$RUNC_BIN" go install -trimpath -tags seccomp "github.com/opencontainers/runc@$RUNC_VERSION"
}

# build_node_k8s: kubelet and kube-proxy from the world's Kubernetes wrapper module (kubernetes.sh
# makes it). Its go.sum lacks modules only the kubelet needs, hence -mod=mod.
build_node_k8s() {
  local work=$OSA_CACHE/kubernetes-$K8S_VERSION/module v maj min ldf b p
  [ -f "$work/go.mod" ] || die "the Kubernetes wrapper module is missing: run kubernetes.sh build first"
  v=${K8S_VERSION#v}; maj=${v%%.*}; min=${v#*.}; min=${min%%.*}
  ldf="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$maj -X $p.gitMinor=$min -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  for b in kubelet kube-proxy; do
    [ -x "$K8S_BIN/$b" ] && continue
    echo "building $b $K8S_VERSION"
    (cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ldf" -o "$K8S_BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b")
    mv "$K8S_BIN/$b.tmp" "$K8S_BIN/$b"
  done
}

build_metrics_server() {
  mkdir -p "$MS_BIN"
  CGO_ENABLED=0 GOBIN="$MS_BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
}

cmd_build() {
  mkdir -p "$LOGS"
  apt_install containernetworking-plugins iptables conntrack libseccomp-dev gcc libc6-dev pkg-config \
    >>"$LOGS/apt.log" 2>&1 || die "apt-get install of the real node's packages failed (see $LOGS/apt.log)"
  if [ -x "$CTR_BIN/containerd" ] && [ -x "$CTR_BIN/containerd-shim-runc-v2" ] && [ -x "$CTR_BIN/ctr" ]; then
    log "containerd $CONTAINERD_VERSION: cached in $CTR_BIN"
  else
    with_progress "build containerd $CONTAINERD_VERSION" 150 "$LOGS/build-containerd.log" build_containerd
  fi
  if [ -x "$RUNC_BIN/runc" ]; then log "runc $RUNC_VERSION: cached in $RUNC_BIN"
  else with_progress "build runc $RUNC_VERSION" 30 "$LOGS/build-runc.log" build_runc; fi
  if [ -x "$K8S_BIN/kubelet" ] && [ -x "$K8S_BIN/kube-proxy" ]; then log "kubelet, kube-proxy $K8S_VERSION: cached in $K8S_BIN"
  else with_progress "build kubelet and kube-proxy $K8S_VERSION" 200 "$LOGS/build-node.log" build_node_k8s; fi
  if [ -x "$MS_BIN/metrics-server" ]; then log "metrics-server $METRICS_SERVER_VERSION: cached in $MS_BIN"
  else with_progress "build metrics-server $METRICS_SERVER_VERSION" 150 "$LOGS/build-metrics-server.log" build_metrics_server; fi
}

# preflight: what the node needs of this machine, each failure naming its cause.
preflight() {
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
  grep -qw overlay /proc/filesystems || die "the kernel has no overlayfs (containerd's snapshotter needs it): load the overlay module"
  local c
  for c in cpu memory pids; do
    [ -d "/sys/fs/cgroup/$c" ] || [ -f /sys/fs/cgroup/cgroup.controllers ] ||
      die "no cgroup hierarchy for the $c controller under /sys/fs/cgroup (the kubelet needs cgroups v1 or v2 mounted)"
  done
  for c in bridge host-local loopback portmap; do
    [ -x "$CNI_BIN/$c" ] || die "CNI plugin $c missing in $CNI_BIN (Debian's containernetworking-plugins)"
  done
  [ -r "$PKI/ca.key" ] || die "the world's CA ($PKI) is missing: start Kubernetes first (kubernetes.sh up)"
}

# node_pki: the kubelet's client certificate (system:node:<name>, for the Node authorizer) and
# its serving certificate for the node's address, from the world's CA.
node_pki() {
  local d=$RN/pki
  # Certificates of an earlier CA (the world's PKI was remade) are remade too.
  openssl verify -CAfile "$PKI/ca.crt" "$d/kubelet-client.crt" >/dev/null 2>&1 || rm -rf "$d"
  [ -f "$d/kubelet-client.crt" ] && [ -f "$d/kubelet-serving.crt" ] && [ -f "$d/kube-proxy.crt" ] && [ -f "$d/metrics-server.crt" ] && return 0
  mkdir -p "$d"
  leaf() { sign_leaf "$d/$1" "$PKI/ca" "${@:2}"; } # name subject eku [san]
  leaf kubelet-client "/O=system:nodes/CN=system:node:$REAL_NODE" clientAuth
  leaf kubelet-serving "/O=system:nodes/CN=system:node:$REAL_NODE" serverAuth "DNS:$REAL_NODE,IP:$HOST_IP"
  leaf kube-proxy "/CN=system:kube-proxy" clientAuth
  leaf metrics-server "/CN=system:metrics-server" clientAuth
  leaf metrics-server-serving "/CN=metrics-server" serverAuth "DNS:metrics-server.kube-system.svc,IP:$HOST_IP"
}

kubeconfig() { kubeconfig_yaml "$2" "$3" "$4" | put "$1"; } # kubeconfig FILE USER CERT KEY

# put FILE: write stdin to FILE only if it differs (kube-proxy exits when its configuration file
# changes, so an idempotent `up` must not touch it).
put() {
  local tmp
  tmp=$(mktemp "$1.XXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

write_config() {
  mkdir -p "$RN/cni" "$RN/containerd" "$RN/kubelet"
  put "$RN/containerd.toml" <<TOML
version = 3
root = "$RN/containerd/root"
state = "$RN/containerd/state"
[grpc]
  address = "$SOCK"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"
[plugins."io.containerd.cri.v1.runtime"]
  # This machine refuses a negative oom_score_adj; CRI asks for -998 for every sandbox.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$RUNC_BIN/runc"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$CNI_BIN"]
    conf_dir = "$RN/cni"
TOML
  put "$RN/cni/10-world.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "world-real-node", "plugins": [
  {"type": "bridge", "bridge": "$REAL_BRIDGE", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$RN/cni-ipam", "ranges": [[{"subnet": "$REAL_POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "loopback"}]}
JSON
  put "$RN/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 controllers only; Kubernetes >= 1.35 refuses them unless told.
# Production nodes should run cgroup v2.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$SOCK
address: $HOST_IP
port: $REAL_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10348
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: $PKI/ca.crt}}
authorization: {mode: Webhook}
tlsCertFile: $RN/pki/kubelet-serving.crt
tlsPrivateKeyFile: $RN/pki/kubelet-serving.key
failSwapOn: false
cgroupRoot: /
staticPodPath: ""
# No resolver: the host's (a private address) must not be reached from pods, and nothing the
# world runs needs names. ClusterFirst pods get a MissingClusterDNS warning and no resolver.
resolvConf: ""
registerNode: true
enforceNodeAllocatable: []
cgroupsPerQOS: true
localStorageCapacityIsolation: false
serializeImagePulls: false
YAML
  put "$RN/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $RN/kube-proxy.kubeconfig}
hostnameOverride: $REAL_NODE
bindAddress: $HOST_IP
healthzBindAddress: 127.0.0.1:10356
metricsBindAddress: 127.0.0.1:10349
mode: iptables
clusterCIDR: $REAL_POD_CIDR
# Only Services are rewritten, and only for traffic from the real node's pods and this host.
conntrack: {maxPerCore: 0}
YAML
  kubeconfig "$RN/kubelet.kubeconfig" node "$RN/pki/kubelet-client.crt" "$RN/pki/kubelet-client.key"
  kubeconfig "$RN/kube-proxy.kubeconfig" kube-proxy "$RN/pki/kube-proxy.crt" "$RN/pki/kube-proxy.key"
  kubeconfig "$RN/metrics-server.kubeconfig" metrics-server "$RN/pki/metrics-server.crt" "$RN/pki/metrics-server.key"
}

# metrics_server_objects: metrics-server's RBAC (as its release manifests grant it) and the
# metrics.k8s.io APIService, served by the process on this host through a Service without
# selector whose endpoint is the world's address.
metrics_server_objects() {
  local ca
  ca=$(base64 -w0 "$PKI/ca.crt")
  "$K8S_BIN/kubectl" --kubeconfig "$OSA_STATE/kubernetes/admin.kubeconfig" apply -f - <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:metrics-server"}
rules:
- apiGroups: [""]
  resources: [nodes/metrics]
  verbs: [get]
- apiGroups: [""]
  resources: [pods, nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:metrics-server"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:metrics-server"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:metrics-server"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "metrics-server:system:auth-delegator"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:metrics-server"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: metrics-server-auth-reader, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:metrics-server"}]
---
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system}
spec:
  ports: [{name: https, port: 443, targetPort: $MS_PORT}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: metrics-server-world
  namespace: kube-system
  labels: {kubernetes.io/service-name: metrics-server}
addressType: IPv4
ports: [{name: https, port: $MS_PORT, protocol: TCP}]
endpoints: [{addresses: ["$HOST_IP"], conditions: {ready: true}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  service: {name: metrics-server, namespace: kube-system, port: 443}
  caBundle: $ca
YAML
}

ctr_() { "$CTR_BIN/ctr" --address "$SOCK" -n k8s.io "$@"; }

# world_image OUT NAME PACKAGE IMAGE: build one of the world's programs, pack it as IMAGE
# (registry/name:tag, with cmd/build-images) and import it.
world_image() {
  local out=$1 name=$2 pkg=$3 image=$4
  (cd "$REPO_DIR" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/world-bin/$name" "$pkg") ||
    die "building $pkg failed"
  (cd "$REPO_DIR/cmd/build-images" && go run . --bin-dir "$out/world-bin" --out "$out/world" \
    --registry "${image%/*}" --tag "${image##*:}" "$name") >>"$LOGS/images.log" 2>&1 ||
    die "packing $image failed (see $LOGS/images.log)"
  ctr_ images import "$out/world/$name.tar" >>"$LOGS/images.log" 2>&1 || die "importing $image failed (see $LOGS/images.log)"
}

# cmd_images: import the images pods of the real node use: the sandbox image, the world's
# workload, and the product's (`make images`).
cmd_images() {
  local out=$REPO_DIR/_output/images t
  mkdir -p "$out/world-bin"
  world_image "$out" pause ./e2e/cmd/world-pause "$PAUSE_IMAGE"
  world_image "$out" workload ./e2e/cmd/world-workload "$WORKLOAD_IMAGE"
  for t in "$out"/*.tar; do
    [ -e "$t" ] || continue
    ctr_ images import "$t" >>"$LOGS/images.log" 2>&1 || die "importing $t failed (see $LOGS/images.log)"
  done
  log "real node: images imported: $(ctr_ images ls -q | grep -v '^sha256:' | tr '\n' ' ')"
}

# cmd_import TARBALL: import one more image (docker save / OCI tarball), e.g. the stock
# cluster-autoscaler's, which cannot be pulled here; prints the names it holds.
cmd_import() {
  local t=${1:?usage: realnode.sh import IMAGE.tar}
  [ -s "$t" ] || die "image tarball $t: not found"
  ctr_ images import "$t" >>"$LOGS/images.log" 2>&1 || die "importing $t failed (see $LOGS/images.log)"
  log "real node: imported $t"
}

cmd_up() {
  [ "$(id -u)" = 0 ] || die "the real node needs root"
  cmd_build
  preflight
  mkdir -p "$RUN" "$LOGS"
  node_pki
  write_config
  PATH=$CTR_BIN:$RUNC_BIN:$PATH start_bg "$RUN" "$LOGS" containerd "$CTR_BIN/containerd" --config "$RN/containerd.toml"
  local i
  for i in $(seq 60); do [ -S "$SOCK" ] && ctr_ version >/dev/null 2>&1 && break; sleep 0.5
    pid_alive "$RUN" containerd || die "containerd exited: see $LOGS/containerd.log"; done
  ctr_ version >/dev/null 2>&1 || die "containerd did not answer on $SOCK within 30 s: see $LOGS/containerd.log"
  cmd_images
  start_bg "$RUN" "$LOGS" kubelet "$K8S_BIN/kubelet" --config "$RN/kubelet.yaml" \
    --kubeconfig "$RN/kubelet.kubeconfig" --hostname-override "$REAL_NODE" --node-ip "$HOST_IP" \
    --root-dir "$RN/kubelet" --cert-dir "$RN/pki" \
    --node-labels "$REAL_NODE_LABEL=real" --register-with-taints "$REAL_NODE_LABEL=real:NoSchedule"
  start_bg "$RUN" "$LOGS" kube-proxy "$K8S_BIN/kube-proxy" --config "$RN/kube-proxy.yaml"
  wait_ok kubelet http://127.0.0.1:10348/healthz 120 "$RUN"
  local kc=$OSA_STATE/kubernetes/admin.kubeconfig
  for i in $(seq 120); do
    [ "$("$K8S_BIN/kubectl" --kubeconfig "$kc" get node "$REAL_NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] && break
    pid_alive "$RUN" kubelet || die "kubelet exited: see $LOGS/kubelet.log"
    sleep 1
  done
  [ "$i" -lt 120 ] || die "node $REAL_NODE not Ready within 2 minutes: see $LOGS/kubelet.log and $LOGS/containerd.log"
  log "real node $REAL_NODE: Ready (kubelet $HOST_IP:$REAL_KUBELET_PORT, pods $REAL_POD_CIDR)"
  metrics_server_objects >>"$LOGS/metrics-server-objects.log" 2>&1 || die "applying metrics-server's RBAC and APIService failed (see $LOGS/metrics-server-objects.log)"
  # Only the real node: kwok nodes have no kubelet to scrape.
  start_bg "$RUN" "$LOGS" metrics-server "$MS_BIN/metrics-server" \
    --kubeconfig "$RN/metrics-server.kubeconfig" --authentication-kubeconfig "$RN/metrics-server.kubeconfig" \
    --authorization-kubeconfig "$RN/metrics-server.kubeconfig" \
    --bind-address "$HOST_IP" --secure-port "$MS_PORT" \
    --tls-cert-file "$RN/pki/metrics-server-serving.crt" --tls-private-key-file "$RN/pki/metrics-server-serving.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --kubelet-use-node-status-port --node-selector "$REAL_NODE_LABEL=real" --metric-resolution 15s
  wait_ok metrics-server "https://$HOST_IP:$MS_PORT/livez" 60 "$RUN" --cacert "$PKI/ca.crt"
  log "metrics-server $METRICS_SERVER_VERSION: serving metrics.k8s.io from the real node's kubelet"
}

cmd_status() { print_status "$RUN" "${SERVICES[@]}"; }

# cmd_down stops the node and leaves nothing behind: its pods' containers (their shims outlive
# containerd), mounts, network namespaces, the bridge and its veths, cgroups and iptables rules.
cmd_down() {
  stop_pid "$RUN" metrics-server
  stop_pid "$RUN" kubelet
  stop_pid "$RUN" kube-proxy
  if pid_alive "$RUN" containerd; then
    local c
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; done
    sleep 1
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks rm -f "$c" >/dev/null 2>&1 || true; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$c" >/dev/null 2>&1 || true; done
  fi
  stop_pid "$RUN" containerd
  # Shims whose containerd is gone: by the PIDs containerd recorded.
  local f pid
  for f in "$RN"/containerd/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  done
  # Mounts under the node's directories (pod volumes, sandbox netns, overlay rootfs), deepest first.
  awk -v rn="$RN" '$2 ~ "^"rn {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for f in /run/netns/cni-*; do
    [ -e "$f" ] || continue
    # Only the namespaces CNI made for this node's pods: their IP is in the node's pod range.
    if ip netns exec "$(basename "$f")" ip -o -4 addr show 2>/dev/null | grep -q " ${REAL_POD_CIDR%.*}\."; then
      umount "$f" 2>/dev/null || true; rm -f "$f"
    fi
  done
  ip link del "$REAL_BRIDGE" 2>/dev/null || true
  # The kubelet's pod cgroups (its QoS tree lives under /kubepods in every v1 hierarchy).
  local h
  for h in /sys/fs/cgroup/*/kubepods; do
    [ -d "$h" ] || continue
    find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  # kube-proxy's and the kubelet's iptables chains (KUBE-*: no other kubelet runs on this host).
  local ipt table chain rule
  for ipt in iptables ip6tables; do
    command -v "$ipt-save" >/dev/null || continue
    for table in filter nat mangle; do
      "$ipt-save" -t "$table" 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | sed 's/^-A /-D /' | while read -r rule; do
        eval "$ipt -t $table $rule" 2>/dev/null || true
      done || true
      for chain in $("$ipt-save" -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[A-Z0-9-]*\) .*/\1/p'); do
        "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt-save" -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[A-Z0-9-]*\) .*/\1/p'); do
        "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
  rm -rf "$RN/cni-ipam"
}

case ${1:-} in
  build) cmd_build ;;
  up) cmd_up ;;
  images) cmd_images ;;
  import) shift; cmd_import "$@" ;;
  status) cmd_status ;;
  down) cmd_down ;;
  *) echo "usage: $0 build|up|images|import IMAGE.tar|status|down" >&2; exit 2 ;;
esac
