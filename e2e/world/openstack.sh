#!/usr/bin/env bash
# The local world's OpenStack: Zed from Debian 12 packages, as plain processes on 127.0.0.1.
# MariaDB, RabbitMQ, Keystone, Placement, Nova (api, conductor, scheduler, compute with the fake
# virt driver), Glance, Neutron (API server only: Nova calls it on show/list/delete) and Heat.
#
# usage: openstack.sh install|up|status|down|wipe
#   install  Debian packages (~10 min on a fresh machine), once
#   up       install if needed, configure, start what is not running, seed; idempotent
#   status   services, PIDs and memory
#   down     stop what `up` started, by recorded PID
#   wipe     down, then delete the state (the next `up` starts from empty databases)
# Writes $OSA_STATE/openstack/clouds.yaml: cloud "world" (project "autoscaler", application
# credential) and "world-admin".
. "$(dirname "$0")/lib.sh"

ST=$OSA_STATE/openstack
RUN=$ST/run
LOGS=$ST/log
TPL=$WORLD_DIR/openstack
PASTE=$OSA_CACHE/openstack-$OPENSTACK_RELEASE/paste
PW=${OSA_OPENSTACK_PASSWORD:-world-secret}
DB="mysql+pymysql://os:$PW@127.0.0.1"

PKGS=(python3-keystone python3-nova python3-placement python3-glance python3-heat python3-neutron
  python3-pymysql uwsgi-core uwsgi-plugin-python3 mariadb-server rabbitmq-server curl jq openssl)
SERVICES=(mariadb rabbitmq keystone placement nova-api nova-conductor nova-scheduler nova-compute
  glance-api heat-api heat-engine neutron-server)

cmd_install() {
  mkdir -p "$LOGS"
  local p missing=0
  for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing=1; done
  if [ $missing = 1 ]; then
    # Only the python3-* library packages: the service packages carry debconf prompts and init
    # scripts the world does not want. Mostly single-threaded byte-compiling.
    with_progress "install OpenStack $OPENSTACK_RELEASE packages (365 Debian packages)" 600 "$LOGS/apt.log" apt_install "${PKGS[@]}"
  fi
  if [ ! -s "$PASTE/nova-api-paste.ini" ]; then
    # The services' paste pipelines ship in Debian's *-common packages, whose postinsts we avoid:
    # take just those files out of the packages.
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download nova-common glance-common heat-common neutron-common >>"$LOGS/apt.log" 2>&1) ||
      die "apt-get download of the *-common packages failed (see $LOGS/apt.log)"
    for p in "$tmp"/*.deb; do dpkg-deb -x "$p" "$tmp/x"; done
    mkdir -p "$PASTE"
    cp "$tmp/x/usr/share/nova-common/api-paste.ini" "$PASTE/nova-api-paste.ini"
    cp "$tmp/x/usr/share/glance-common/glance-api-paste.ini" "$PASTE/glance-api-paste.ini"
    cp "$tmp/x/etc/heat/api-paste.ini" "$PASTE/heat-api-paste.ini"
    cp "$tmp/x/usr/share/neutron-common/api-paste.ini" "$PASTE/neutron-api-paste.ini"
    rm -rf "$tmp"
  fi
}

render() { # render SRC DEST: fill @ST@ @PW@ @DB@, and point healthcheck files into the state dir
  sed -e "s#@ST@#$ST#g" -e "s#@PW@#$PW#g" -e "s#@DB@#$DB#g" \
    -e "s#disable_by_file_path = /etc/#disable_by_file_path = $ST/etc/#" "$1" >"$2"
}

configure() {
  mkdir -p "$ST"/{etc/{keystone,placement,nova,glance,heat,neutron},data/{keystone,nova/tmp,nova/instances,glance/images,glance/staging,glance/tasks,glance/tmp,heat/tmp,neutron/tmp},rabbitmq}
  chmod 755 "$ST"
  local s
  for s in keystone placement nova heat neutron; do render "$TPL/$s.conf" "$ST/etc/$s/$s.conf"; done
  render "$TPL/glance-api.conf" "$ST/etc/glance/glance-api.conf"
  render "$TPL/ml2_conf.ini" "$ST/etc/neutron/ml2_conf.ini"
  render "$PASTE/nova-api-paste.ini" "$ST/etc/nova/api-paste.ini"
  render "$PASTE/glance-api-paste.ini" "$ST/etc/glance/glance-api-paste.ini"
  render "$PASTE/heat-api-paste.ini" "$ST/etc/heat/api-paste.ini"
  render "$PASTE/neutron-api-paste.ini" "$ST/etc/neutron/api-paste.ini"
  # uwsgi entry point for nova-api; config from $OS_NOVA_CONFIG_DIR (nova.conf + api-paste.ini)
  printf 'from nova.api.openstack.compute.wsgi import init_application\napplication = init_application()\n' >"$ST/etc/nova/nova-api.wsgi"
}

done_mark() { [ -f "$RUN/done.$1" ]; }
mark() { touch "$RUN/done.$1"; }
pyentry() { # pyentry MODULE:FUNC ARGS...: a console-script entry point without its wrapper
  local mod=${1%%:*} fn=${1##*:}; shift
  "$PY" -c "import sys; sys.argv[0]='$mod'; from $mod import $fn; sys.exit($fn())" "$@"
}
pyservice() { # pyservice NAME MODULE ARGS...: start a service whose main() is in MODULE
  local name=$1 mod=$2; shift 2
  start_bg "$RUN" "$LOGS" "$name" "$PY" -c "import sys; sys.argv[0]='$name'; from $mod import main; main()" "$@"
}
uwsgi_app() { # uwsgi_app NAME PORT WSGI_FILE PROCESSES THREADS ENV=VAL...
  local name=$1 port=$2 file=$3 processes=$4 threads=$5 e envs=(); shift 5
  for e in "$@"; do envs+=(--env "$e"); done
  # "Connection: close": uwsgi's http-socket closes idle connections silently, and clients that
  # reuse a pooled connection then get ECONNRESET.
  start_bg "$RUN" "$LOGS" "$name" uwsgi --plugin python3 --http-socket "127.0.0.1:$port" --wsgi-file "$file" \
    --master --processes "$processes" --threads "$threads" --enable-threads --lazy-apps --die-on-term --buffer-size 65535 \
    --add-header "Connection: close" --need-app --no-orphans "${envs[@]}"
}
wait_port() { # wait_port NAME PORT TIMEOUT
  local i
  for ((i = 0; i < $3; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    pid_alive "$RUN" "$1" || die "$1 exited; see $LOGS/$1.log: $(tail -5 "$LOGS/$1.log")"
    sleep 1
  done
  die "$1: port $2 not open after $3 s (log $LOGS/$1.log)"
}
sql() { mariadb --socket="$ST/mysqld/mysql.sock" -uroot "$@"; }

start_mariadb() {
  if [ ! -d "$ST/mysql/mysql" ]; then
    mkdir -p "$ST/mysql"
    chown mysql:mysql "$ST/mysql"
    mariadb-install-db --no-defaults --user=mysql --datadir="$ST/mysql" --skip-test-db \
      --auth-root-authentication-method=socket >"$LOGS/mariadb-install.log" 2>&1
  fi
  mkdir -p "$ST/mysqld"
  chown mysql:mysql "$ST/mysqld" # the socket directory must be writable by mysql
  # --no-defaults: /etc/mysql points at /run/mysqld. Durability is traded for migration speed.
  start_bg "$RUN" "$LOGS" mariadb mariadbd --no-defaults --user=mysql --datadir="$ST/mysql" \
    --socket="$ST/mysqld/mysql.sock" --pid-file="$ST/mysqld/mariadbd.pid" \
    --bind-address=127.0.0.1 --port=3306 --skip-log-bin --max-connections=1000 \
    --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci --log-error="$LOGS/mariadb.err"
  wait_port mariadb 3306 120
  local q="CREATE USER IF NOT EXISTS 'os'@'127.0.0.1' IDENTIFIED BY '$PW'; GRANT ALL PRIVILEGES ON *.* TO 'os'@'127.0.0.1';" d i
  for d in keystone placement nova_api nova nova_cell0 glance heat neutron; do q+="CREATE DATABASE IF NOT EXISTS $d CHARACTER SET utf8mb4;"; done
  for i in $(seq 30); do sql -e "$q" 2>/dev/null && return 0; sleep 1; done
  die "mariadb: could not create the databases"
}

# rabbitmq_tls: a CA of the world's own and a certificate for 127.0.0.1, for the management
# API's TLS listener (the queue metrics are tested over https, as a production broker serves them).
rabbitmq_tls() {
  local tls=$ST/rabbitmq/tls
  # For 127.0.0.1 and for HOST_IP, where world-forward brings the real node's pods.
  [ -s "$tls/server.crt" ] && openssl x509 -in "$tls/server.crt" -noout -ext subjectAltName 2>/dev/null | grep -q "$HOST_IP\$" && return 0
  mkdir -p "$tls"
  [ -s "$tls/ca.crt" ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tls/ca.key" -out "$tls/ca.crt" -days 3650 \
    -subj "/CN=world-rabbitmq-ca" 2>/dev/null || die "rabbitmq: making its CA failed"
  openssl req -newkey rsa:2048 -nodes -keyout "$tls/server.key" -out "$tls/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:%s\nextendedKeyUsage=serverAuth\n' "$HOST_IP" >"$tls/server.ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
    -out "$tls/server.crt" -days 3650 -extfile "$tls/server.ext" 2>/dev/null || die "rabbitmq: making its certificate failed"
}

start_rabbitmq() {
  # The management plugin (its HTTP API feeds the queue metrics), listening on loopback only:
  # plain HTTP on 15672, TLS on 15671.
  rabbitmq_tls
  echo '[rabbitmq_management].' >"$ST/rabbitmq/enabled_plugins"
  printf '%s\n' 'management.tcp.ip = 127.0.0.1' 'management.tcp.port = 15672' \
    'management.ssl.ip = 127.0.0.1' 'management.ssl.port = 15671' \
    "management.ssl.cacertfile = $ST/rabbitmq/tls/ca.crt" "management.ssl.certfile = $ST/rabbitmq/tls/server.crt" \
    "management.ssl.keyfile = $ST/rabbitmq/tls/server.key" >"$ST/rabbitmq/rabbitmq.conf"
  # Its own HOME (Erlang cookie) and mnesia; epmd and distribution bound to loopback.
  start_bg "$RUN" "$LOGS" rabbitmq env HOME="$ST/rabbitmq" RABBITMQ_NODENAME=rabbit@localhost \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=5672 RABBITMQ_DIST_PORT=25672 \
    ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_MNESIA_BASE="$ST/rabbitmq/mnesia" \
    RABBITMQ_LOG_BASE="$LOGS/rabbitmq" RABBITMQ_ENABLED_PLUGINS_FILE="$ST/rabbitmq/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$ST/rabbitmq/rabbitmq.conf" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    /usr/lib/rabbitmq/bin/rabbitmq-server
}

rabbitmq_management() {
  # A world started before the plugin was part of it gets it online, bound as at boot.
  if ! (exec 3<>/dev/tcp/127.0.0.1/15672) 2>/dev/null; then
    local env=(env HOME="$ST/rabbitmq" RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_ENABLED_PLUGINS_FILE="$ST/rabbitmq/enabled_plugins")
    "${env[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl eval \
      'application:set_env(rabbitmq_management, tcp_config, [{ip, "127.0.0.1"}, {port, 15672}]).' >>"$LOGS/rabbitmq-plugins.log" 2>&1
    "${env[@]}" /usr/lib/rabbitmq/bin/rabbitmq-plugins enable --online rabbitmq_management >>"$LOGS/rabbitmq-plugins.log" 2>&1 ||
      die "rabbitmq: enabling the management plugin failed (see $LOGS/rabbitmq-plugins.log)"
  fi
  wait_port rabbitmq 15672 60
}

setup_keystone() {
  local C=(--config-file "$ST/etc/keystone/keystone.conf")
  if ! done_mark keystone; then
    {
      keystone-manage "${C[@]}" db_sync
      keystone-manage "${C[@]}" fernet_setup --keystone-user root --keystone-group root
      keystone-manage "${C[@]}" credential_setup --keystone-user root --keystone-group root
      keystone-manage "${C[@]}" bootstrap --bootstrap-password "$PW" \
        --bootstrap-admin-url http://127.0.0.1:5000/v3/ --bootstrap-internal-url http://127.0.0.1:5000/v3/ \
        --bootstrap-public-url http://127.0.0.1:5000/v3/ --bootstrap-region-id RegionOne
    } >>"$LOGS/keystone-manage.log" 2>&1
    mark keystone
    log "keystone: database and bootstrap done"
  fi
  uwsgi_app keystone 5000 /usr/bin/keystone-wsgi-public 1 4 OS_KEYSTONE_CONFIG_DIR="$ST/etc/keystone"
  wait_http keystone http://127.0.0.1:5000/v3 180 "$RUN"
  if ! done_mark register; then "$PY" "$TPL/setup.py" register "$PW" && mark register; fi
}

nova_manage() { pyentry nova.cmd.manage:main --config-file "$ST/etc/nova/nova.conf" "$@"; }

db_syncs() {
  # Schema migrations are CPU bound and independent: run them side by side.
  local pids=() p rc=0
  (done_mark placement || { placement-manage --config-file "$ST/etc/placement/placement.conf" db sync && mark placement; }) \
    >>"$LOGS/placement-manage.log" 2>&1 & pids+=($!)
  (done_mark nova || {
    nova_manage api_db sync &&
      { nova_manage cell_v2 list_cells 2>/dev/null | grep -q ' cell0 ' || nova_manage cell_v2 map_cell0; } &&
      { nova_manage cell_v2 list_cells 2>/dev/null | grep -q ' cell1 ' || nova_manage cell_v2 create_cell --name cell1; } &&
      nova_manage db sync && mark nova
  }) >>"$LOGS/nova-manage.log" 2>&1 & pids+=($!)
  (done_mark glance || { pyentry glance.cmd.manage:main --config-file "$ST/etc/glance/glance-api.conf" db_sync && mark glance; }) \
    >>"$LOGS/glance-manage.log" 2>&1 & pids+=($!)
  (done_mark heat || { pyentry heat.cmd.manage:main --config-file "$ST/etc/heat/heat.conf" db_sync && mark heat; }) \
    >>"$LOGS/heat-manage.log" 2>&1 & pids+=($!)
  (done_mark neutron || { pyentry neutron.db.migration.cli:main --config-file "$ST/etc/neutron/neutron.conf" \
    --config-file "$ST/etc/neutron/ml2_conf.ini" upgrade heads && mark neutron; }) >>"$LOGS/neutron-manage.log" 2>&1 & pids+=($!)
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  [ $rc = 0 ] || die "a database migration failed (see $LOGS/*-manage.log)"
}

start_services() {
  local N=(--config-file "$ST/etc/nova/nova.conf")
  uwsgi_app placement 8778 /usr/bin/placement-api 1 4 OS_PLACEMENT_CONFIG_DIR="$ST/etc/placement"
  # nova-api monkey-patches eventlet; with several uwsgi threads in one process, greenlets get
  # switched across threads ("greenlet.error: cannot switch to a different thread") and the API
  # hangs. Processes, not threads, give it concurrency.
  uwsgi_app nova-api 8774 "$ST/etc/nova/nova-api.wsgi" 3 1 OS_NOVA_CONFIG_DIR="$ST/etc/nova"
  pyservice nova-conductor nova.cmd.conductor "${N[@]}"
  pyservice nova-scheduler nova.cmd.scheduler "${N[@]}"
  pyservice nova-compute nova.cmd.compute "${N[@]}"
  pyservice glance-api glance.cmd.api --config-file "$ST/etc/glance/glance-api.conf"
  pyservice heat-api heat.cmd.api --config-file "$ST/etc/heat/heat.conf"
  pyservice heat-engine heat.cmd.engine --config-file "$ST/etc/heat/heat.conf"
  pyservice neutron-server neutron.cmd.eventlet.server --config-file "$ST/etc/neutron/neutron.conf" \
    --config-file "$ST/etc/neutron/ml2_conf.ini"
  wait_http placement http://127.0.0.1:8778/ 300 "$RUN"
  wait_http nova-api http://127.0.0.1:8774/ 300 "$RUN"
  wait_http glance-api http://127.0.0.1:9292/ 300 "$RUN"
  wait_http heat-api http://127.0.0.1:8004/ 300 "$RUN"
  wait_http neutron-server http://127.0.0.1:9696/ 300 "$RUN"
}

admin_token() {
  curl -s -i -X POST http://127.0.0.1:5000/v3/auth/tokens -H 'Content-Type: application/json' \
    -d '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"id":"default"},"password":"'"$PW"'"}}},"scope":{"project":{"name":"admin","domain":{"id":"default"}}}}}' |
    tr -d '\r' | awk -F': ' 'tolower($1)=="x-subject-token"{print $2}'
}

neutron_warmup() {
  # Neutron Zed: the first GET /v2.0/ports of an API worker fails with HTTP 500 (the
  # Port.port_forwardings backref exists only once the ORM mappers are configured by another
  # query). With no agents nothing queries first, so list networks once (api_workers = 0).
  local token i
  token=$(admin_token)
  for i in $(seq 30); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Auth-Token: $token" http://127.0.0.1:9696/v2.0/networks)" = 200 ] && return 0
    sleep 2
  done
  die "neutron: GET /v2.0/networks never returned 200 (see $LOGS/neutron-server.log)"
}

discover_compute() {
  local i
  for i in $(seq 180); do
    nova_manage cell_v2 discover_hosts >>"$LOGS/discover.log" 2>&1 || true
    [ "$(sql -N -e 'select count(*) from nova_api.host_mappings' 2>/dev/null)" -gt 0 ] 2>/dev/null && return 0
    sleep 2
  done
  die "nova-compute never registered (see $LOGS/nova-compute.log)"
}

bring_up() {
  mkdir -p "$RUN" "$LOGS"
  configure
  start_mariadb
  start_rabbitmq
  setup_keystone
  db_syncs
  wait_port rabbitmq 5672 180
  rabbitmq_management
  # epmd was daemonised by rabbitmq's erl: record its PID so `down` ends it by PID.
  [ -f "$RUN/epmd.pid" ] || pgrep -x epmd -n >"$RUN/epmd.pid" || true
  start_services
  neutron_warmup
  discover_compute
  "$PY" "$TPL/setup.py" seed "$PW" "$ST" "$HOST_IP"
}

cmd_up() {
  cmd_install
  local t0=$(date +%s) first=0
  done_mark nova || first=1
  if all_running && [ -s "$ST/clouds.yaml" ]; then rabbitmq_management; log "openstack: already running"; return 0; fi
  if [ $first = 1 ]; then
    with_progress "start OpenStack (first start: databases and registration)" 300 "$LOGS/up.log" bring_up
  else
    with_progress "start OpenStack" 40 "$LOGS/up.log" bring_up
  fi
  log "openstack: ready in $(($(date +%s) - t0))s; clouds.yaml at $ST/clouds.yaml (clouds: world, world-admin)"
}

all_running() { local s; for s in "${SERVICES[@]}"; do pid_alive "$RUN" "$s" || return 1; done; }

tree_rss_kb() { # RSS of a process and all its descendants
  local total kid
  total=$(awk '$1=="Rss:"{print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0)
  for kid in $(pgrep -P "$1" || true); do total=$((total + $(tree_rss_kb "$kid"))); done
  echo "${total:-0}"
}

cmd_status() {
  local s pid rss sum=0
  for s in "${SERVICES[@]}"; do
    if pid_alive "$RUN" "$s"; then
      pid=$(cat "$RUN/$s.pid"); rss=$(tree_rss_kb "$pid"); sum=$((sum + rss))
      printf '%-16s running pid %-8s %6s MiB\n' "$s" "$pid" "$((rss / 1024))"
    else printf '%-16s down\n' "$s"; fi
  done
  printf '%-16s %26s MiB\n' total "$((sum / 1024))"
}

cmd_down() {
  local i
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do stop_pid "$RUN" "${SERVICES[i]}"; done
  if [ -f "$RUN/epmd.pid" ]; then kill "$(cat "$RUN/epmd.pid")" 2>/dev/null || true; rm -f "$RUN/epmd.pid"; fi
}

case ${1:-} in
  install) cmd_install ;;
  up) cmd_up ;;
  status) cmd_status ;;
  down) cmd_down ;;
  wipe) cmd_down; rm -rf "$ST" ;;
  *) echo "usage: $0 install|up|status|down|wipe" >&2; exit 2 ;;
esac
