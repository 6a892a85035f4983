#!/usr/bin/env bash
# The whole fleet on one machine, for a person to try and for the fleet tests: PostgreSQL (a throw-away cluster of
# its own), Redis, SeaweedFS (S3), API replicas behind nginx, and RQ workers; everything on 127.0.0.1.
#
#   scripts/cluster.sh up [--replicas N] [--workers M]   start it (default 2 and 2); prints ENDPOINT, TRAINING_KEY,
#                                                        PREDICTION_KEY, PREDICTION_RESOURCE_ID as NAME=value lines
#   scripts/cluster.sh down                              stop exactly what `up` started and remove its data
#   scripts/cluster.sh env                               the settings the fleet's processes run with (NAME=value)
#   scripts/cluster.sh summary                           the lines `up` printed
#   scripts/cluster.sh status                            each part and whether it runs
#   scripts/cluster.sh stop|start|kill PART              one part (for fault tests): postgres redis seaweedfs nginx
#                                                        apiN workerN; kill is SIGKILL
#
# Environment: OCV_CLUSTER_DIR (state: settings, logs, pid files; default .cluster in the repository),
# OCV_CLUSTER_PORT (nginx's port; default: a free one). Needs .venv (./scripts/dev-setup.sh) and Debian's
# postgresql, redis-server and nginx (.ci/run installs them). docs/scale-out.md maps each part to a managed one.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${OCV_CLUSTER_DIR:-$root/.cluster}
venv=$root/.venv
die() { echo "cluster: $*" >&2; exit 1; }
log() { echo "cluster: $*" >&2; }

# ---------------------------------------------------------------------------------------------------------------
# state: $state/cluster.env (ports, secrets, paths), $state/pids/NAME, $state/logs/NAME.log. Services that run as
# another user (PostgreSQL refuses root; nginx's workers are nobody) keep their files under $runtime in /tmp, which
# they can reach whatever folder $state is in.

load() {
    [[ -f $state/cluster.env ]] || die "no cluster in $state (run: scripts/cluster.sh up)"
    # shellcheck disable=SC1091
    source "$state/cluster.env"
}

free_ports() {  # COUNT: ports p with p and p+10000 free (SeaweedFS puts its gRPC ports there)
    "$venv/bin/python" - "$1" <<'EOF'
import random, socket, sys
def free(port):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
found = []
while len(found) < int(sys.argv[1]):
    port = random.randrange(20000, 50000)
    if port not in found and port + 10000 not in found and free(port) and free(port + 10000):
        found.append(port)
print(" ".join(map(str, found)))
EOF
}

secret() { "$venv/bin/python" -c 'import secrets; print(secrets.token_hex(16))'; }

as_service_user() {  # run as the user PostgreSQL needs: postgres when we are root, ourselves otherwise
    if [[ $EUID -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_bin() { echo "/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -V | tail -n1)/bin"; }

fleet_env() {  # the settings every ocv process of the fleet runs with
    cat <<EOF
OCV_DATABASE_URL=postgresql+psycopg://ocv:$PG_PASSWORD@127.0.0.1:$PG_PORT/ocv
OCV_BLOB_URL=s3://ocv-blobs/fleet
OCV_QUEUE_URL=redis://:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/0
OCV_DATA_DIR=$state/data
OCV_TRAINING_KEY=$TRAINING_KEY
OCV_PREDICTION_KEY=$PREDICTION_KEY
AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
AWS_REGION=us-east-1
EOF
}

# ---------------------------------------------------------------------------------------------------------------
# processes: started by us in a session of their own, pid kept; stopped only if that pid still runs what we started

pid_of() { [[ -f $state/pids/$1 ]] && cat "$state/pids/$1" || true; }

ours() {  # NAME: the recorded pid runs and is the program we started under that name
    local pid; pid=$(pid_of "$1")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(cat "$state/pids/$1.cmd")"
}

spawn() {  # NAME PROGRAM ARGS...: start in the background with the fleet's settings, log to logs/NAME.log
    local name=$1; shift
    ( set -a; source <(fleet_env); set +a
      exec setsid "$@" </dev/null >>"$state/logs/$name.log" 2>&1 ) &
    echo $! >"$state/pids/$name"
    echo "$(basename "$1") ${2:-}" >"$state/pids/$name.cmd"  # what its command line shows, checked before a signal
}

signal_part() {  # NAME SIGNAL
    if ours "$1"; then
        kill "-$2" "$(pid_of "$1")" 2>/dev/null || true
    fi
}

wait_gone() {  # NAME SECONDS: wait for the process to end, SIGKILL after
    local pid; pid=$(pid_of "$1")
    [[ -n $pid ]] || return 0
    for _ in $(seq $(($2 * 10))); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$state/pids/$1"; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$state/pids/$1"
}

wait_for() {  # WHAT SECONDS COMMAND...: until COMMAND succeeds
    local what=$1 seconds=$2; shift 2
    for _ in $(seq $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "$what did not come up within ${seconds}s (logs in $state/logs)"
}

answers() {  # URL [STATUS...]: an HTTP answer (with one of STATUS, if given)
    "$venv/bin/python" - "$@" <<'EOF'
import sys, httpx
status = httpx.get(sys.argv[1], timeout=2).status_code
sys.exit(0 if len(sys.argv) == 2 or str(status) in sys.argv[2:] else 1)
EOF
}

# ---------------------------------------------------------------------------------------------------------------
# the parts

start_postgres() {
    local bin; bin=$(pg_bin)
    as_service_user "$bin/pg_ctl" -D "$runtime/pg" -l "$runtime/pg/server.log" -w -t 60 \
        -o "-p $PG_PORT -k $runtime/pg -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null
}
stop_postgres() {  # fast: open connections are cut, as when a managed database fails over
    local bin; bin=$(pg_bin)
    [[ -f $runtime/pg/postmaster.pid ]] || return 0
    as_service_user "$bin/pg_ctl" -D "$runtime/pg" -m fast -w -t 60 stop >/dev/null || true
}
kill_postgres() { [[ -f $runtime/pg/postmaster.pid ]] && kill -KILL "$(head -n1 "$runtime/pg/postmaster.pid")" 2>/dev/null || true; }

init_postgres() {
    local bin; bin=$(pg_bin)
    mkdir -p "$runtime/pg"
    printf '%s\n' "$PG_PASSWORD" >"$runtime/pg.password"
    if [[ $EUID -eq 0 ]]; then chown -R postgres: "$runtime/pg" "$runtime/pg.password"; fi
    as_service_user "$bin/initdb" -D "$runtime/pg" -U ocv --pwfile="$runtime/pg.password" --auth=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 >"$state/logs/postgres-init.log" 2>&1 || die "initdb failed: $state/logs/postgres-init.log"
    rm -f "$runtime/pg.password"
    start_postgres
    PGPASSWORD=$PG_PASSWORD "$bin/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U ocv -d postgres -c "CREATE DATABASE ocv" >/dev/null
}

start_redis() {
    # No persistence: a restart loses every message, which the workers' housekeeping puts back from the database.
    spawn redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --requirepass "$REDIS_PASSWORD" --save '' \
        --appendonly no --dir "$state/redis" --daemonize no
    echo redis-server >"$state/pids/redis.cmd"  # Redis rewrites its command line to "redis-server host:port"
    wait_for Redis 20 redis-cli -p "$REDIS_PORT" -a "$REDIS_PASSWORD" --no-auth-warning ping
}

start_seaweedfs() {
    # The access key pair in the environment turns S3 authentication on. Every port is given, so that two
    # clusters on one machine never meet; telemetry is off (nothing leaves the machine).
    ( export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
      exec setsid "$venv/bin/weed" mini -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$state/seaweedfs" \
        -master.port="$WEED_MASTER_PORT" -volume.port="$WEED_VOLUME_PORT" -filer.port="$WEED_FILER_PORT" \
        -s3.port="$S3_PORT" -s3.port.iceberg="$WEED_ICEBERG_PORT" -s3.port.lance="$WEED_LANCE_PORT" \
        -admin.port="$WEED_ADMIN_PORT" -admin.ui=false -webdav=false -master.telemetry=false \
        -master.volumeSizeLimitMB=256 -bucket=ocv-blobs </dev/null >>"$state/logs/seaweedfs.log" 2>&1 ) &
    echo $! >"$state/pids/seaweedfs"; echo "weed mini" >"$state/pids/seaweedfs.cmd"
    wait_for SeaweedFS 60 s3_ready
}
s3_ready() {
    ( set -a; source <(fleet_env); set +a
      "$venv/bin/python" -c "import boto3; boto3.client('s3').head_bucket(Bucket='ocv-blobs')" )
}

start_api() {  # N
    local port_var="API_PORT_$1"
    spawn "api$1" "$venv/bin/ocv" serve --host 127.0.0.1 --port "${!port_var}" --log-level warning
    wait_for "api$1" 120 answers "http://127.0.0.1:${!port_var}/health"
}

start_worker() {  # N
    spawn "worker$1" "$venv/bin/ocv" worker --log-level info
}

write_nginx_conf() {
    local upstreams="" n
    for n in $(seq "$REPLICAS"); do
        local port_var="API_PORT_$n"
        # A replica that refuses connections is skipped for a few seconds; a request it already took is never
        # sent to another (nginx retries non-idempotent requests only if nothing reached the upstream).
        upstreams+="        server 127.0.0.1:${!port_var} max_fails=1 fail_timeout=3s;"$'\n'
    done
    mkdir -p "$runtime/nginx"
    cat >"$state/nginx.conf" <<EOF
daemon off;
worker_processes 2;
pid $runtime/nginx/nginx.pid;
error_log $state/logs/nginx.log warn;
events { worker_connections 2048; }
http {
    access_log off;
    client_body_temp_path $runtime/nginx/body;
    proxy_temp_path $runtime/nginx/proxy;
    fastcgi_temp_path $runtime/nginx/fastcgi;
    uwsgi_temp_path $runtime/nginx/uwsgi;
    scgi_temp_path $runtime/nginx/scgi;
    client_max_body_size 600m;
    upstream ocv {
$upstreams        keepalive 64;
        # Below uvicorn's 5 s keep-alive: nginx lets an idle connection go before the replica closes it, so a
        # request is never sent on a connection the replica is closing (a POST there would be answered 502).
        keepalive_timeout 4s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://ocv;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_connect_timeout 2s;
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
            proxy_next_upstream error timeout;
        }
    }
}
EOF
    if [[ $EUID -eq 0 ]]; then chown -R nobody "$runtime/nginx"; fi
}

start_nginx() {
    spawn nginx nginx -p "$runtime/nginx" -c "$state/nginx.conf"
    wait_for nginx 20 answers "http://127.0.0.1:$NGINX_PORT/health" 200 503
}

# ---------------------------------------------------------------------------------------------------------------

start_part() {
    case $1 in
        postgres) start_postgres ;;
        redis) start_redis ;;
        seaweedfs) start_seaweedfs ;;
        nginx) start_nginx ;;
        api[0-9]*) start_api "${1#api}" ;;
        worker[0-9]*) start_worker "${1#worker}" ;;
        *) die "unknown part '$1'" ;;
    esac
}

stop_part() {  # PART SIGNAL (TERM: orderly, KILL: kill -9)
    case $1 in
        postgres) if [[ $2 == KILL ]]; then kill_postgres; else stop_postgres; fi ;;
        redis|seaweedfs|nginx|api[0-9]*|worker[0-9]*)
            [[ -f $state/pids/$1 ]] || die "part '$1' is not running"
            signal_part "$1" "$2"; wait_gone "$1" 30 ;;
        *) die "unknown part '$1'" ;;
    esac
}

parts() {  # in the order they start
    local n names="postgres redis seaweedfs"
    for n in $(seq "$REPLICAS"); do names+=" api$n"; done
    for n in $(seq "$WORKERS"); do names+=" worker$n"; done
    echo "$names nginx"
}

up() {
    local replicas=2 workers=2
    while [[ $# -gt 0 ]]; do
        case $1 in
            --replicas) replicas=$2; shift 2 ;;
            --workers) workers=$2; shift 2 ;;
            *) die "usage: cluster.sh up [--replicas N] [--workers M]" ;;
        esac
    done
    [[ -x $venv/bin/ocv && -x $venv/bin/weed ]] || "$root/scripts/dev-setup.sh" >&2
    for program in redis-server redis-cli nginx; do
        command -v "$program" >/dev/null || die "$program is missing (Debian: apt-get install redis-server nginx)"
    done
    [[ -d /usr/lib/postgresql ]] || die "PostgreSQL is missing (Debian: apt-get install postgresql)"
    [[ ! -f $state/cluster.env ]] || die "a cluster already runs from $state (scripts/cluster.sh down first)"
    mkdir -p "$state/pids" "$state/logs" "$state/redis" "$state/seaweedfs" "$state/data"
    local ports; read -r -a ports <<<"$(free_ports $((10 + replicas)))"
    runtime=$(mktemp -d /tmp/ocv-cluster.XXXXXX)
    chmod 755 "$runtime"
    {
        echo "REPLICAS=$replicas"
        echo "WORKERS=$workers"
        echo "runtime=$runtime"
        echo "PG_PORT=${ports[0]}"
        echo "REDIS_PORT=${ports[1]}"
        echo "S3_PORT=${ports[2]}"
        echo "WEED_MASTER_PORT=${ports[3]}"
        echo "WEED_VOLUME_PORT=${ports[4]}"
        echo "WEED_FILER_PORT=${ports[5]}"
        echo "WEED_ICEBERG_PORT=${ports[6]}"
        echo "WEED_LANCE_PORT=${ports[7]}"
        echo "WEED_ADMIN_PORT=${ports[8]}"
        echo "NGINX_PORT=${OCV_CLUSTER_PORT:-${ports[9]}}"
        for n in $(seq "$replicas"); do echo "API_PORT_$n=${ports[$((9 + n))]}"; done
        echo "PG_PASSWORD=$(secret)"
        echo "REDIS_PASSWORD=$(secret)"
        echo "S3_ACCESS_KEY=ocv$(secret | cut -c1-12)"
        echo "S3_SECRET_KEY=$(secret)"
        echo "TRAINING_KEY=${OCV_TRAINING_KEY:-$(secret)}"
        echo "PREDICTION_KEY=${OCV_PREDICTION_KEY:-$(secret)}"
    } >"$state/cluster.env"
    chmod 600 "$state/cluster.env"
    load
    trap 'status=$?; if [[ $status -ne 0 ]]; then log "start-up failed; stopping what started"; down >/dev/null 2>&1 || true; fi' EXIT
    log "PostgreSQL on 127.0.0.1:$PG_PORT"; init_postgres
    log "Redis on 127.0.0.1:$REDIS_PORT"; start_redis
    log "SeaweedFS (S3) on 127.0.0.1:$S3_PORT"; start_seaweedfs
    write_nginx_conf
    for n in $(seq "$replicas"); do
        local port_var="API_PORT_$n"
        log "API replica $n on 127.0.0.1:${!port_var}"; start_api "$n"
    done
    for n in $(seq "$workers"); do log "worker $n"; start_worker "$n"; done
    log "nginx on 127.0.0.1:$NGINX_PORT"; start_nginx
    trap - EXIT
    summary
}

summary() {
    local resource_id
    resource_id=$("$venv/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['prediction_resource_id'])" \
        "$state/data/default-resource.json")
    echo "ENDPOINT=http://127.0.0.1:$NGINX_PORT"
    echo "TRAINING_KEY=$TRAINING_KEY"
    echo "PREDICTION_KEY=$PREDICTION_KEY"
    echo "PREDICTION_RESOURCE_ID=$resource_id"
}

down() {
    load
    local layer part
    # Front to back, each layer at once: nginx, replicas and workers; then Redis and SeaweedFS; then PostgreSQL.
    for layer in "nginx $(parts | tr ' ' '\n' | grep -E '^(api|worker)' | tr '\n' ' ')" "redis seaweedfs"; do
        for part in $layer; do signal_part "$part" TERM; done
        for part in $layer; do wait_gone "$part" 30; done
    done
    stop_postgres
    [[ -n ${runtime:-} && $runtime == /tmp/ocv-cluster.* ]] && rm -rf "$runtime"
    rm -rf "$state/pids" "$state/redis" "$state/seaweedfs" "$state/data" "$state/nginx.conf" "$state/cluster.env"
    log "stopped; logs kept in $state/logs"
}

status() {
    load
    local part
    for part in $(parts); do
        case $part in
            postgres) if [[ -f $runtime/pg/postmaster.pid ]]; then echo "$part running"; else echo "$part stopped"; fi ;;
            *) if ours "$part"; then echo "$part running (pid $(pid_of "$part"))"; else echo "$part stopped"; fi ;;
        esac
    done
}

command=${1:-}
shift || true
case $command in
    up) up "$@" ;;
    down) down ;;
    env) load; fleet_env; echo "ENDPOINT=http://127.0.0.1:$NGINX_PORT" ;;
    summary) load; summary ;;
    status) status ;;
    start) load; start_part "${1:?part}" ;;
    stop) load; stop_part "${1:?part}" TERM ;;
    kill) load; stop_part "${1:?part}" KILL ;;
    *) die "usage: cluster.sh up [--replicas N] [--workers M] | down | env | status | start|stop|kill PART" ;;
esac
