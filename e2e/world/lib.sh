# Shared helpers for the local world's scripts. Source it; it defines paths, logging and process
# handling. Every process the world starts is recorded by PID under $OSA_STATE/*/run and stopped
# by that PID (its own process group), never by name.
set -euo pipefail
WORLD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$WORLD_DIR/../.." && pwd)
# shellcheck source=versions.env
. "$WORLD_DIR/versions.env"
OSA_CACHE=${OSA_CACHE:-$HOME/.cache/openstack-autoscaler}
OSA_STATE=${OSA_STATE:-/var/tmp/openstack-autoscaler}
# The world's own addresses, added to lo: 198.51.100.0/24 is TEST-NET-2 (documentation range).
# .10 = kube-apiserver advertise address and host side of aggregated APIs; .11 = kwok node IP;
# .128/25 = pod IPs (kwok's pool), which the sandboxes give their network namespaces.
HOST_IP=${HOST_IP:-198.51.100.10}
NODE_IP=${NODE_IP:-198.51.100.11}
POD_CIDR=${POD_CIDR:-198.51.100.128/25}
# .32/27 = Service IPs (the kubernetes Service is .33): inside the world's range, so no packet is
# ever addressed to a private range, even one kube-proxy rewrites. .64/27 = the real node's pods
# (a CNI bridge); its kubelet serves on HOST_IP.
SERVICE_CIDR=${SERVICE_CIDR:-198.51.100.32/27}
KUBERNETES_SVC_IP=${KUBERNETES_SVC_IP:-198.51.100.33}
REAL_NODE=${REAL_NODE:-world-real-node}
REAL_POD_CIDR=${REAL_POD_CIDR:-198.51.100.64/27}
REAL_BRIDGE=${REAL_BRIDGE:-osa-rn0}
REAL_KUBELET_PORT=${REAL_KUBELET_PORT:-10350}
# The Debian python that has the OpenStack libraries (a pyenv python3 earlier on PATH does not).
PY=/usr/bin/python3
export DEBIAN_FRONTEND=noninteractive

T_START=${T_START:-$(date +%s)}
log() { printf '[%s +%4ss] %s\n' "$(date +%H:%M:%S)" "$(($(date +%s) - T_START))" "$*"; }
die() { log "FATAL: $*" >&2; exit 1; }

# with_progress LABEL EXPECTED_SECONDS LOGFILE CMD...: run a long step, print a line every 20 s
# with elapsed and expected time so a newcomer sees progress, not silence.
with_progress() {
  local label=$1 expect=$2 logfile=$3; shift 3
  local t0 pid rc
  t0=$(date +%s)
  log "$label: started (usually ~$((expect / 60))m$((expect % 60))s; log: $logfile)"
  "$@" >>"$logfile" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && log "$label: $(($(date +%s) - t0))s elapsed of ~${expect}s expected"
  done
  rc=0; wait "$pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -25 "$logfile" >&2
    die "$label failed (exit $rc); full log: $logfile"
  fi
  log "$label: done in $(($(date +%s) - t0))s"
}

# pid_alive RUNDIR NAME
pid_alive() { [ -f "$1/$2.pid" ] && kill -0 "$(cat "$1/$2.pid")" 2>/dev/null; }

# start_bg RUNDIR LOGDIR NAME CMD...: start CMD in its own session (process group), record its PID.
start_bg() {
  local rundir=$1 logdir=$2 name=$3; shift 3
  mkdir -p "$rundir" "$logdir"
  if pid_alive "$rundir" "$name"; then log "$name: already running (pid $(cat "$rundir/$name.pid"))"; return 0; fi
  setsid "$@" >>"$logdir/$name.log" 2>&1 </dev/null &
  echo $! >"$rundir/$name.pid"
  log "$name: started (pid $!)"
}

# sign_leaf OUT CA SUBJECT EKU [SAN]: a key OUT.key and a certificate OUT.crt for SUBJECT, signed by
# CA.crt/CA.key, for the extended key usage EKU (serverAuth, clientAuth) and the SAN if given.
sign_leaf() {
  local out=$1 ca=$2 ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$4"
  [ -n "${5:-}" ] && ext="$ext
subjectAltName=$5"
  openssl req -newkey rsa:2048 -nodes -keyout "$out.key" -out "$out.csr" -subj "$3" 2>/dev/null
  openssl x509 -req -in "$out.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -out "$out.crt" -days 3650 \
    -extfile <(echo "$ext") 2>/dev/null
  rm -f "$out.csr"
}

# kubeconfig_yaml USER CERT KEY: a kubeconfig for the world's API server (on stdout) with a client
# certificate.
kubeconfig_yaml() {
  cat <<KC
apiVersion: v1
kind: Config
clusters:
- name: world
  cluster:
    server: https://$HOST_IP:6443
    certificate-authority: $OSA_STATE/kubernetes/pki/ca.crt
users:
- name: $1
  user:
    client-certificate: $2
    client-key: $3
contexts:
- name: world
  context: {cluster: world, user: $1}
current-context: world
KC
}

# print_status RUNDIR NAME...: one line per recorded process, running (with its PID) or down.
print_status() {
  local rundir=$1 s; shift
  for s in "$@"; do
    if pid_alive "$rundir" "$s"; then printf '%-24s running pid %s\n' "$s" "$(cat "$rundir/$s.pid")"
    else printf '%-24s down\n' "$s"; fi
  done
}

# stop_pid RUNDIR NAME: TERM the recorded process group, wait up to 10 s, then KILL it.
stop_pid() {
  local rundir=$1 name=$2 pid i
  [ -f "$rundir/$name.pid" ] || return 0
  pid=$(cat "$rundir/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    log "$name: stopped (pid $pid)"
  fi
  rm -f "$rundir/$name.pid"
}

# wait_http NAME URL TIMEOUT RUNDIR [CURL ARGS...]: wait for any HTTP answer (even 401).
wait_http() {
  local name=$1 url=$2 timeout=$3 rundir=$4 code i; shift 4
  for ((i = 0; i < timeout * 2; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url" || true)
    if [ "$code" != "000" ]; then return 0; fi
    if [ -f "$rundir/$name.pid" ] && ! pid_alive "$rundir" "$name"; then die "$name exited; see its log"; fi
    sleep 0.5
  done
  die "$name: no HTTP answer from $url after ${timeout}s"
}

# wait_ok NAME URL TIMEOUT RUNDIR [CURL ARGS...]: wait for HTTP 200 (health endpoints).
wait_ok() {
  local name=$1 url=$2 timeout=$3 rundir=$4 i; shift 4
  for ((i = 0; i < timeout * 2; i++)); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url" || true)" = 200 ] && return 0
    if [ -f "$rundir/$name.pid" ] && ! pid_alive "$rundir" "$name"; then die "$name exited; see its log"; fi
    sleep 0.5
  done
  die "$name: $url did not answer 200 within ${timeout}s"
}

# apt_install PKG...: install what is missing (no recommends, no daemons started by postinsts).
apt_install() {
  local missing=() p i
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing Debian packages ${missing[*]}: run as root (apt-get install)"
  # Package postinsts must not start daemons: the world starts its own processes.
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  apt-get update -q
  # Retried: an image-level dpkg hook deletes downloaded .debs after any dpkg run, so a concurrent
  # apt elsewhere can make ours fail with "cannot access archive".
  for i in 1 2 3; do
    apt-get install -y -q --no-install-recommends "${missing[@]}" && return 0
    echo "apt-get install failed (try $i)"; sleep 5
  done
  return 1
}

# ensure_lo_addr IP: add a /32 to lo (traffic to it never leaves the host).
ensure_lo_addr() { ip -o addr show dev lo | grep -q " $1/" || ip addr add "$1/32" dev lo; }
