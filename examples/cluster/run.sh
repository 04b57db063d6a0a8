#!/usr/bin/env bash
# Three Nimbus nodes of examples/hello on 127.0.0.1, members of one cluster
# on NATS JetStream, with nginx in front:
#
#   examples/cluster/run.sh            # then: curl http://127.0.0.1:8080/hello/you
#
# Nodes listen on 127.0.0.1:3101-3103 (admin 3201-3203); nginx on $PORT
# (8080). Needs a NATS server with JetStream ($NIMBUS_CLUSTER, default
# nats://127.0.0.1:4222: `nats-server -js`) and nginx (Debian: `apt-get
# install nginx-light`). Ctrl-C stops everything; state goes to a temporary
# folder.
set -euo pipefail
cd "$(dirname "$0")/../.."

NATS=${NIMBUS_CLUSTER:-nats://127.0.0.1:4222}
PORT=${PORT:-8080}
NIMBUS=${NIMBUS:-target/release/nimbus}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is missing: apt-get install nginx-light" >&2; exit 1; }
[ -x "$NIMBUS" ] || cargo build --release -p nimbus
"$NIMBUS" build examples/hello

work=$(mktemp -d)
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

for i in 1 2 3; do
    "$NIMBUS" up examples/hello --cluster "$NATS" --cluster-name hello-example \
        --listen "127.0.0.1:310$i" --admin-listen "127.0.0.1:320$i" \
        --state-dir "$work/node$i" >"$work/node$i.log" 2>&1 &
    pids+=($!)
done
for i in 1 2 3; do
    for _ in $(seq 1 300); do
        curl -sf "http://127.0.0.1:310$i/.well-known/nimbus/ready" >/dev/null && break
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:310$i/.well-known/nimbus/ready" >/dev/null ||
        { echo "node $i is not ready; its log:" >&2; cat "$work/node$i.log" >&2; exit 1; }
done

sed "s/@PORT@/$PORT/" examples/cluster/nginx.conf >"$work/nginx.conf"
"$NGINX" -p "$work" -c "$work/nginx.conf" -e "$work/nginx-error.log" &
pids+=($!)

echo "three nodes behind http://127.0.0.1:$PORT (members: $NIMBUS nodes --admin http://127.0.0.1:3201)"
wait
