#!/usr/bin/env bash
# A cluster on NATS JetStream, measured in one run:
#   queue      MESSAGES messages published through node 1's admin API to a
#              `queue-noop` consumer (concurrency 16 per node), with 1, 2 and 3
#              nodes: published messages divided by the time until the last is
#              acknowledged (summed over the nodes' own metrics)
#   kv         wrk GET and PUT of a 100-byte value through the `kv-store` guest
#              (CONNECTIONS connections), on a node with the embedded store and
#              on a cluster node (NATS KV)
#   hello      wrk GET /hello/bench through nginx to three nodes, against one
#              node direct, back to back
#
# Run with: benches/cluster.sh
#
# On a 2-core machine the three nodes, nginx, NATS and wrk share two cores, so
# more nodes show the cost of coordination and of the hop, not scaling.
#
# Settings (environment): DURATION seconds per wrk run (default 10),
# CONNECTIONS (default 16), MESSAGES (default 5000), NATS_URL (default
# nats://127.0.0.1:4222). Raw reports are kept under target/cluster-bench/.
# Needs, installed when missing: wrk and nginx-light (Debian packages), curl.
set -euo pipefail

readonly DURATION=${DURATION:-10}
readonly CONNECTIONS=${CONNECTIONS:-16}
readonly MESSAGES=${MESSAGES:-5000}
readonly NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
readonly READY_TIMEOUT_SECONDS=120
readonly DRAIN_TIMEOUT_SECONDS=300
readonly APP=cluster-bench
readonly GUEST_TARGET=wasm32-wasip2

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT=$PWD
readonly OUT=$ROOT/target/cluster-bench
readonly GUESTS=$ROOT/target/$GUEST_TARGET/release
readonly NIMBUS=$ROOT/target/release/nimbus

# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

for pkg in wrk:wrk nginx:nginx-light curl:curl; do
    tool=${pkg%%:*}
    if ! command -v "$tool" >/dev/null && [[ ! -x /usr/sbin/$tool ]]; then
        log "installing ${pkg#*:}"
        as_root apt-get update -qq
        as_root apt-get install -y -qq "${pkg#*:}" >/dev/null
    fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
rustup target add "$GUEST_TARGET" >/dev/null 2>&1 || true

log "building nimbus and the guests"
cargo build --release --quiet -p nimbus
cargo build --release --quiet --target "$GUEST_TARGET" -p kv-store -p queue-noop -p hello

rm -rf "$OUT"
mkdir -p "$OUT"
head -c 100 /dev/zero | tr '\0' v >"$OUT/kv-value"
write_wrk_scripts "$OUT"
export KV_VALUE_FILE=$OUT/kv-value MESSAGES
cat >"$OUT/nimbus.toml" <<EOF
version = 1

[app]
name = "$APP"

[functions.hello]
source = "$GUESTS/hello.wasm"
routes = ["GET /hello/:name"]

[functions.kv]
source = "$GUESTS/kv_store.wasm"
routes = ["/kv/..."]
kv = ["bench"]

[functions.noop]
source = "$GUESTS/queue_noop.wasm"
queue = { topic = "bench.noop", concurrency = 16 }
EOF

# --- nodes -----------------------------------------------------------------------------

pids=() publics=() admins=()
stop_all() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=() publics=() admins=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# start NAME [NIMBUS ARGS...]: one `nimbus up` of the bench app with a fresh
# state folder, waited for until it is ready.
start() {
    local name=$1
    shift
    rm -rf "$OUT/state-$name"
    env -u RUST_BACKTRACE -u RUST_LOG -u NIMBUS_LOG "$NIMBUS" up "$OUT/nimbus.toml" \
        --state-dir "$OUT/state-$name" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" \
        >"$OUT/$name.out" 2>"$OUT/$name.err" &
    local pid=$! public= admin= deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
    while [[ -z $public || -z $admin ]]; do
        public=$(sed -n 's|^listening on http://\([0-9.:]*\).*|\1|p' "$OUT/$name.out" | head -1)
        admin=$(sed -n 's|^admin listening on http://\([0-9.:]*\).*|\1|p' "$OUT/$name.out" | head -1)
        kill -0 "$pid" 2>/dev/null || { cat "$OUT/$name.err" >&2; die "$name exited"; }
        ((SECONDS < deadline)) || die "$name printed no address in time"
        sleep 0.1
    done
    until curl -fsS "http://$public/.well-known/nimbus/ready" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$name was not ready in time"
        sleep 0.1
    done
    pids+=("$pid") publics+=("$public") admins+=("$admin")
}

wrk_cpu=()

# delete_cluster NAME: deletes what cluster NAME made on the NATS server, with
# the plain NATS protocol (no client to install).
delete_cluster() {
    local host=${NATS_URL#nats://} stream
    local port=${host##*:}
    host=${host%%:*}
    {
        exec 3<>"/dev/tcp/$host/$port"
        printf 'CONNECT {"verbose":false}\r\n' >&3
        for stream in "$1_queue_$APP" "$1_dead_$APP" "$1_replay_$APP" "KV_$1_members" \
            "KV_$1_deploy" "KV_$1_kv_${APP}_bench" "OBJ_$1_components"; do
            printf 'PUB $JS.API.STREAM.DELETE.%s 0\r\n\r\n' "$stream" >&3
        done
        printf 'PING\r\n' >&3
        timeout 5 grep -q -m1 PONG <&3 || true
        exec 3>&-
    } 2>/dev/null || log "warning: could not delete the NATS streams of $1"
}

declare -A result

# cluster_of N: N nodes of a fresh cluster; sets `cluster`.
cluster_of() {
    cluster="clbench$$-$1"
    for i in $(seq 1 "$1"); do
        start "node$i-of-$1" --cluster "$NATS_URL" --cluster-name "$cluster"
    done
}

queue_scenario() {
    local n=$1 started ended published acked deadline publisher
    cluster_of "$n"
    log "queue: $MESSAGES messages, $n node(s)"
    started=$(date +%s.%N)
    wrk -t1 -c"$CONNECTIONS" -d"${DRAIN_TIMEOUT_SECONDS}s" -s "$OUT/publish.lua" \
        "http://${admins[0]}/v1/topics/bench.noop/messages" >"$OUT/queue-$n.wrk" 2>&1 &
    publisher=$!
    deadline=$((SECONDS + DRAIN_TIMEOUT_SECONDS))
    while :; do
        published=$(metric "${admins[0]}" 'nimbus_queue_published_total{function="admin"}')
        acked=0
        for a in "${admins[@]}"; do
            acked=$((acked + $(metric "$a" 'nimbus_queue_deliveries_total{function="noop",kind="acked"}')))
        done
        ((published >= MESSAGES && acked >= published)) && break
        kill -0 "$publisher" 2>/dev/null || { cat "$OUT/queue-$n.wrk" >&2; die "the publisher stopped"; }
        ((SECONDS < deadline)) || die "$acked of $published acknowledged after ${DRAIN_TIMEOUT_SECONDS}s"
        sleep 0.02
    done
    ended=$(date +%s.%N)
    kill "$publisher" 2>/dev/null || true
    wait "$publisher" 2>/dev/null || true
    result[queue.$n]=$(awk -v n="$published" -v a="$started" -v b="$ended" 'BEGIN { printf "%.0f", n / (b - a) }')
    local shares=()
    for a in "${admins[@]}"; do
        shares+=("$(metric "$a" 'nimbus_queue_deliveries_total{function="noop",kind="acked"}')")
    done
    result[shares.$n]="${shares[*]}"
}

kv_scenario() {
    local name=$1 url
    url="http://${publics[0]}/kv/bench/key"
    curl -fsS -X PUT --data-binary @"$OUT/kv-value" "$url" || die "cannot store the value"
    wrk_run /dev/null -t1 -c"$CONNECTIONS" -d2s "$url"
    log "kv on $name: get"
    wrk_run "$OUT/kv-get.$name.wrk" -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$url"
    log "kv on $name: set"
    wrk_run "$OUT/kv-set.$name.wrk" -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$OUT/put.lua" "$url"
    result[get.$name]=$(rate "$OUT/kv-get.$name.wrk")
    result[set.$name]=$(rate "$OUT/kv-set.$name.wrk")
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for n in 1 2 3; do
    queue_scenario "$n"
    if [[ $n -eq 1 ]]; then kv_scenario nats; fi
    if [[ $n -eq 3 ]]; then
        cat >"$OUT/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid nginx.pid;
error_log nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path client_body; proxy_temp_path proxy;
    fastcgi_temp_path fastcgi; uwsgi_temp_path uwsgi; scgi_temp_path scgi;
    upstream nimbus {
        server ${publics[0]}; server ${publics[1]}; server ${publics[2]};
        keepalive 64;
    }
    server {
        listen 127.0.0.1:18080;
        location / {
            proxy_pass http://nimbus;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
        "$NGINX" -p "$OUT" -c "$OUT/nginx.conf" -e "$OUT/nginx-error.log" &
        nginx_pid=$!
        until curl -fsS http://127.0.0.1:18080/hello/bench >/dev/null 2>&1; do sleep 0.1; done
        wrk_run /dev/null -t1 -c"$CONNECTIONS" -d2s http://127.0.0.1:18080/hello/bench
        log "hello through nginx to three nodes"
        wrk_run "$OUT/hello-nginx.wrk" -t1 -c"$CONNECTIONS" -d"${DURATION}s" http://127.0.0.1:18080/hello/bench
        log "hello on one node direct"
        wrk_run "$OUT/hello-direct.wrk" -t1 -c"$CONNECTIONS" -d"${DURATION}s" "http://${publics[0]}/hello/bench"
        result[hello.nginx]=$(rate "$OUT/hello-nginx.wrk")
        result[hello.direct]=$(rate "$OUT/hello-direct.wrk")
        kill "$nginx_pid" 2>/dev/null || true
        wait "$nginx_pid" 2>/dev/null || true
    fi
    stop_all
    delete_cluster "$cluster"
done
start embedded
kv_scenario embedded
stop_all
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
{
    echo "## A cluster on NATS JetStream"
    echo
    echo "Run $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)),"
    echo "nimbus $(git rev-parse --short HEAD), load average $load_before before and $load_after after."
    echo "Everything (nodes, NATS, nginx, wrk) shares the machine's CPUs."
    echo
    echo "| measure | result |"
    echo "|---|---|"
    for n in 1 2 3; do
        echo "| queue, $n node(s): messages/s end to end (acked per node) | ${result[queue.$n]} (${result[shares.$n]}) |"
    done
    echo "| queue, 3 nodes against 1 | $(ratio "${result[queue.3]}" "${result[queue.1]}")x |"
    echo "| kv get/s, embedded store | ${result[get.embedded]} |"
    echo "| kv get/s, NATS KV | ${result[get.nats]} ($(ratio "${result[get.nats]}" "${result[get.embedded]}")x embedded) |"
    echo "| kv set/s, embedded store | ${result[set.embedded]} |"
    echo "| kv set/s, NATS KV | ${result[set.nats]} ($(ratio "${result[set.nats]}" "${result[set.embedded]}")x embedded) |"
    echo "| hello/s, one node direct | ${result[hello.direct]} |"
    echo "| hello/s, nginx to three nodes | ${result[hello.nginx]} ($(ratio "${result[hello.nginx]}" "${result[hello.direct]}")x direct) |"
} | tee "$OUT/report.md"
