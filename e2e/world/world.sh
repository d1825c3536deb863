#!/usr/bin/env bash
# The local world: real OpenStack + real Kubernetes on one machine, and the test infrastructure
# that joins them (node registrar, pod sandboxes). Used by `make demo`, `make e2e` and `make down`.
#
# usage: world.sh up|down|status|env|running
#   up       install, build (cached), start everything; idempotent. Writes $OSA_STATE/world.env
#   down     stop everything by recorded PID and remove the sandboxes and the lo addresses
#   status   what runs, with memory
#   running  exit 0 when the whole world is up
. "$(dirname "$0")/lib.sh"

W=$OSA_STATE/world
RUN=$W/run
LOGS=$W/log
BIN=$REPO_DIR/_output/bin
ENV_FILE=$OSA_STATE/world.env
CLUSTER=world
TOOLS=(world-registrar world-sandboxes world-loadgen world-forward)
# What the real node's pods reach through world-forward on $HOST_IP (the catalog's "internal"
# endpoints): Keystone, Nova, Placement, Glance, Heat, Neutron, RabbitMQ's management API.
FORWARD_PORTS=5000,8774,8778,9292,8004,9696,15672,15671

build_tools() {
  mkdir -p "$BIN"
  local t
  for t in "${TOOLS[@]}"; do (cd "$REPO_DIR" && go build -o "$BIN/$t" "./e2e/cmd/$t"); done
}

cmd_up() {
  [ "$(id -u)" = 0 ] || die "the world needs root (network namespaces, addresses on lo, apt-get)"
  command -v go >/dev/null || die "Go is not installed: install Go 1.26 (see README)"
  mkdir -p "$RUN" "$LOGS"
  apt_install curl jq iproute2 openssl >>"$LOGS/apt.log" 2>&1 || die "apt-get install failed (see $LOGS/apt.log)"
  # OpenStack (package install, then start) and the Kubernetes build are the long steps; they
  # overlap, since one mostly waits on dpkg and single-threaded Python and the other compiles.
  local os_pid os_rc=0
  "$WORLD_DIR/openstack.sh" up >"$LOGS/openstack-up.log" 2>&1 &
  os_pid=$!
  log "openstack: starting in the background (progress in $LOGS/openstack-up.log)"
  "$WORLD_DIR/kubernetes.sh" build
  with_progress "build the world's tools (registrar, sandboxes, load generator, forwarder)" 60 "$LOGS/build-tools.log" build_tools
  "$WORLD_DIR/kubernetes.sh" up
  # The real node runs the product's images: built here (static binaries packed by
  # cmd/build-images), imported into its containerd.
  with_progress "build the product's images (make images)" 120 "$LOGS/images.log" make -C "$REPO_DIR" images
  "$WORLD_DIR/realnode.sh" up
  log "waiting for OpenStack:"
  while kill -0 "$os_pid" 2>/dev/null; do
    sleep 20
    kill -0 "$os_pid" 2>/dev/null && log "  openstack: $(tail -1 "$LOGS/openstack-up.log" | cut -c1-150)"
  done
  wait "$os_pid" || os_rc=$?
  [ $os_rc = 0 ] || { tail -20 "$LOGS/openstack-up.log"; die "OpenStack did not start (see $LOGS/openstack-up.log)"; }
  tail -1 "$LOGS/openstack-up.log"

  local kubeconfig=$OSA_STATE/kubernetes/admin.kubeconfig clouds=$OSA_STATE/openstack/clouds.yaml
  start_bg "$RUN" "$LOGS" world-forward "$BIN/world-forward" --listen "$HOST_IP" --to 127.0.0.1 --ports "$FORWARD_PORTS"
  # Node groups the registrar serves: the e2e tests and the demo write the provider's config here.
  [ -s "$W/node-groups.yaml" ] || printf 'clusterName: %s\nnodeGroups: []\n' "$CLUSTER" >"$W/node-groups.yaml"
  start_bg "$RUN" "$LOGS" world-registrar "$BIN/world-registrar" --kubeconfig "$kubeconfig" \
    --clouds-file "$clouds" --cloud world-admin --groups "$W/node-groups.yaml"
  start_bg "$RUN" "$LOGS" world-sandboxes "$BIN/world-sandboxes" --kubeconfig "$kubeconfig" --host-ip "$HOST_IP"
  cat >"$ENV_FILE" <<ENV
# The local world, for tests and for your shell: . $ENV_FILE
export KUBECONFIG=$kubeconfig
export OS_CLIENT_CONFIG_FILE=$clouds
export OS_CLOUD=world
export OSA_WORLD_CLUSTER=$CLUSTER
export OSA_WORLD_NODE_GROUPS=$W/node-groups.yaml
export OSA_WORLD_SEED=$OSA_STATE/openstack/seed.json
export OSA_WORLD_RABBITMQ_CA=$OSA_STATE/openstack/rabbitmq/tls/ca.crt
export OSA_WORLD_HOST_IP=$HOST_IP
export OSA_WORLD_BIN=$BIN
export OSA_WORLD_K8S_BIN=$OSA_CACHE/kubernetes-$K8S_VERSION/bin
export OSA_WORLD_REAL_NODE=$REAL_NODE
export OSA_WORLD_WORKLOAD_IMAGE=$WORKLOAD_IMAGE
export PATH=$OSA_CACHE/kubernetes-$K8S_VERSION/bin:\$PATH
ENV
  sleep 1
  pid_alive "$RUN" world-registrar || die "world-registrar exited: $(tail -5 "$LOGS/world-registrar.log")"
  pid_alive "$RUN" world-sandboxes || die "world-sandboxes exited: $(tail -5 "$LOGS/world-sandboxes.log")"
  pid_alive "$RUN" world-forward || die "world-forward exited: $(tail -5 "$LOGS/world-forward.log")"
  log "world: up. In your shell: . $ENV_FILE   (then kubectl get nodes)"
}

cmd_down() {
  local t
  for t in world-loadgen world-sandboxes world-registrar world-forward; do stop_pid "$RUN" "$t"; done
  "$WORLD_DIR/realnode.sh" down
  "$WORLD_DIR/kubernetes.sh" down
  "$WORLD_DIR/openstack.sh" down
  for t in "$HOST_IP" "$NODE_IP"; do ip addr del "$t/32" dev lo 2>/dev/null || true; done
  rm -f "$ENV_FILE"
}

cmd_running() {
  [ -s "$ENV_FILE" ] && pid_alive "$RUN" world-registrar && pid_alive "$RUN" world-sandboxes && pid_alive "$RUN" world-forward &&
    pid_alive "$OSA_STATE/kubernetes/run" kube-apiserver && pid_alive "$OSA_STATE/openstack/run" nova-api &&
    pid_alive "$OSA_STATE/realnode/run" kubelet
}

cmd_status() {
  echo "== openstack"; "$WORLD_DIR/openstack.sh" status
  echo "== kubernetes"; "$WORLD_DIR/kubernetes.sh" status
  echo "== real node"; "$WORLD_DIR/realnode.sh" status
  echo "== test infrastructure"
  local t
  for t in "${TOOLS[@]}"; do
    if pid_alive "$RUN" "$t"; then printf '%-24s running pid %s\n' "$t" "$(cat "$RUN/$t.pid")"; else printf '%-24s down\n' "$t"; fi
  done
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  running) cmd_running ;;
  env) cat "$ENV_FILE" ;;
  *) echo "usage: $0 up|down|status|running|env" >&2; exit 2 ;;
esac
