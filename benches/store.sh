#!/usr/bin/env bash
# The embedded store under write load: key-value sets against gets, the syncs
# to disk each set costs, the latency of a lone write, and queue messages end
# to end on the embedded store against NATS JetStream, all in one run.
#
# Run with: benches/store.sh
#
# Scenarios, each on `nimbus up` (release build, a fresh instance per request):
#   kv-get       wrk GET of a 100-byte value through the `kv-store` guest, CONNECTIONS connections
#   kv-set       wrk PUT of a 100-byte value to the same key, CONNECTIONS connections
#   kv-set-1     wrk PUT with one connection: the latency of a lone write
#   syncs        kv-set again with the server under `strace -f -c -e trace=fsync,fdatasync`:
#                the server's sync calls divided by the sets wrk counted
#   queue        MESSAGES messages published through the admin API (wrk, CONNECTIONS
#                connections) to a `queue-noop` consumer (concurrency 16): published
#                messages divided by the time until the last is acknowledged, on the
#                embedded store and on NATS JetStream ($NATS_URL)
#
# BASELINE=REV (a git revision, e.g. BASELINE=main~5) also builds that revision's
# `nimbus` in its own worktree and target directory (target/store-baseline) and
# measures it in the same run, each scenario back to back with the current
# build, so the two are compared on the same machine at the same time. The
# guests are the current tree's for both.
#
# Settings (environment): DURATION seconds per wrk run (default 10), CONNECTIONS
# (default 16), MESSAGES (default 5000), NATS_URL (default nats://127.0.0.1:4222;
# NATS=0 skips the NATS run), BASELINE. The server runs on CPU 0 and wrk on CPU 1
# when there are two or more CPUs. Raw reports are kept under target/store/.
#
# What it needs, installed when missing: wrk and strace (Debian packages), curl,
# the wasm32-wasip2 target.
set -euo pipefail

readonly DURATION=${DURATION:-10}
readonly CONNECTIONS=${CONNECTIONS:-16}
readonly MESSAGES=${MESSAGES:-5000}
readonly NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
readonly BASELINE=${BASELINE:-}
readonly KV_VALUE_BYTES=100
readonly WARMUP_SECONDS=2
readonly READY_TIMEOUT_SECONDS=120
readonly DRAIN_TIMEOUT_SECONDS=300
readonly GUEST_TARGET=wasm32-wasip2

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT=$PWD
readonly OUT=$ROOT/target/store
readonly GUESTS=$ROOT/target/$GUEST_TARGET/release

# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

# --- tools -----------------------------------------------------------------------------

install_missing wrk strace curl
if command -v rustup >/dev/null; then
    rustup target add "$GUEST_TARGET" >/dev/null 2>&1 || die "rustup target add $GUEST_TARGET failed"
fi
pin_cpus

# --- build -----------------------------------------------------------------------------

log "building nimbus and the guests"
cargo build --release --quiet -p nimbus
cargo build --release --quiet --target "$GUEST_TARGET" -p kv-store -p queue-noop
for guest in kv_store queue_noop; do
    [[ -f $GUESTS/$guest.wasm ]] || die "missing $GUESTS/$guest.wasm"
done

rm -rf "$OUT"
mkdir -p "$OUT"
declare -A binary=([current]=$ROOT/target/release/nimbus)
builds=(current)
if [[ -n $BASELINE ]]; then
    base=$ROOT/target/store-baseline
    rev=$(git rev-parse --verify "$BASELINE^{commit}") || die "BASELINE=$BASELINE is no revision"
    log "building the baseline $BASELINE ($rev) in $base"
    if [[ -d $base/src ]]; then
        git -C "$base/src" checkout --quiet --detach "$rev"
    else
        mkdir -p "$base"
        git worktree add --quiet --detach "$base/src" "$rev"
    fi
    CARGO_TARGET_DIR=$base/target cargo build --release --quiet \
        --manifest-path "$base/src/Cargo.toml" -p nimbus
    binary[baseline]=$base/target/release/nimbus
    builds+=(baseline)
fi
describe() {
    if [[ $1 == baseline ]]; then
        local short
        short=$(git rev-parse --short "$BASELINE")
        if [[ $short == "$BASELINE" ]]; then echo "baseline ($short)"; else echo "baseline ($BASELINE, $short)"; fi
    else
        echo "current ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- host || echo " with uncommitted changes"))"
    fi
}

head -c "$KV_VALUE_BYTES" /dev/zero | tr '\0' v >"$OUT/kv-value"
write_wrk_scripts "$OUT"
export KV_VALUE_FILE=$OUT/kv-value MESSAGES

cat >"$OUT/nimbus.toml" <<EOF
version = 1

[app]
name = "store-bench"

[functions.kv]
source = "$GUESTS/kv_store.wasm"
routes = ["/kv/..."]
kv = ["bench"]

[functions.noop]
source = "$GUESTS/queue_noop.wasm"
queue = { topic = "bench.noop", concurrency = 16 }
EOF

# --- servers ---------------------------------------------------------------------------

pid=
trap stop_server EXIT
trap 'exit 130' INT TERM

# start NAME BUILD [WRAPPER...] -- [NIMBUS ARGS...]: starts `nimbus up` of the bench
# app with a fresh state folder; sets `public` and `admin` to its addresses.
start() {
    local name=$1 build=$2
    shift 2
    local wrapper=()
    while [[ $1 != -- ]]; do wrapper+=("$1"); shift; done
    shift
    rm -rf "$OUT/state-$name"
    : >"$OUT/$name.out"
    "${server_cpu[@]}" "${wrapper[@]}" env -u RUST_BACKTRACE -u RUST_LOG -u NIMBUS_LOG \
        "${binary[$build]}" up "$OUT/nimbus.toml" --state-dir "$OUT/state-$name" \
        --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" \
        >"$OUT/$name.out" 2>"$OUT/$name.err" &
    pid=$!
    local deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
    public= admin=
    while [[ -z $public || -z $admin ]]; do
        public=$(sed -n 's|^listening on http://\([0-9.:]*\).*|\1|p' "$OUT/$name.out" | head -1)
        admin=$(sed -n 's|^admin listening on http://\([0-9.:]*\).*|\1|p' "$OUT/$name.out" | head -1)
        kill -0 "$pid" 2>/dev/null || { cat "$OUT/$name.err" >&2; die "$name exited before it was listening"; }
        ((SECONDS < deadline)) || { cat "$OUT/$name.err" >&2; die "$name printed no address in time"; }
        sleep 0.1
    done
}

# wrk_run REPORT ARGS...: runs wrk on wrk's CPU and fails on any error answer.
requests() { awk '/ requests in / { print $1 }' "$1"; }
declare -A result

kv_scenarios() {
    local build=$1 url
    start "kv-$build" "$build" --
    url="http://$public/kv/bench/key"
    curl -fsS -X PUT --data-binary @"$OUT/kv-value" "$url" || die "cannot store the value"
    wrk_run /dev/null -t1 -c"$CONNECTIONS" -d"${WARMUP_SECONDS}s" "$url"
    wrk_run /dev/null -t1 -c"$CONNECTIONS" -d"${WARMUP_SECONDS}s" -s "$OUT/put.lua" "$url"
    log "$build: kv get, $CONNECTIONS connections"
    wrk_run "$OUT/kv-get.$build.wrk" -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url"
    log "$build: kv set, $CONNECTIONS connections"
    wrk_run "$OUT/kv-set.$build.wrk" -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$OUT/put.lua" "$url"
    log "$build: kv set, one connection"
    wrk_run "$OUT/kv-set-1.$build.wrk" -t1 -c1 -d"${DURATION}s" --latency -s "$OUT/put.lua" "$url"
    stop_server
    result[get.$build]=$(rate "$OUT/kv-get.$build.wrk")
    result[set.$build]=$(rate "$OUT/kv-set.$build.wrk")
    result[set1.$build]=$(rate "$OUT/kv-set-1.$build.wrk")
    result[set1p99.$build]=$(p99_ms "$OUT/kv-set-1.$build.wrk")
    result[setp99.$build]=$(p99_ms "$OUT/kv-set.$build.wrk")

    # The same sets with every sync call of the server counted. strace stops
    # the server only at the traced calls (seccomp-bpf), so the rest runs as usual.
    start "syncs-$build" "$build" strace -f --seccomp-bpf -c -e trace=fsync,fdatasync \
        -o "$OUT/syncs.$build.strace" --
    url="http://$public/kv/bench/key"
    curl -fsS -X PUT --data-binary @"$OUT/kv-value" "$url" || die "cannot store the value"
    log "$build: kv set under strace, $CONNECTIONS connections"
    wrk_run "$OUT/syncs.$build.wrk" -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$OUT/put.lua" "$url"
    # SIGTERM to nimbus itself (strace's child): it exits, and strace writes its summary.
    pkill -TERM -P "$pid" nimbus 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
    local syncs sets
    syncs=$(awk '$NF == "fsync" || $NF == "fdatasync" { n += $4 } END { print n + 0 }' "$OUT/syncs.$build.strace")
    sets=$(( $(requests "$OUT/syncs.$build.wrk") + 1 ))
    result[syncs.$build]=$syncs
    result[sets.$build]=$sets
    result[per_set.$build]=$(awk -v s="$syncs" -v n="$sets" 'BEGIN { printf "%.3f", s / n }')
}

# queue_scenario BUILD BROKER: messages per second end to end; BROKER is
# `embedded` or `nats`.
queue_scenario() {
    local build=$1 broker=$2 args=() prefix=
    if [[ $broker == nats ]]; then
        prefix="storebench$$${build}"
        args=(--broker "$NATS_URL" --broker-prefix "$prefix")
    fi
    start "queue-$broker-$build" "$build" -- "${args[@]}"
    local topic_url="http://$admin/v1/topics/bench.noop/messages"
    log "$build: $MESSAGES messages on $broker"
    local started ended published acked deadline publisher
    started=$(date +%s.%N)
    # wrk stops publishing after MESSAGES answers but keeps its clock running
    # until -d, so it runs in the background and the clock here is what counts.
    "${wrk_cpu[@]}" wrk -t1 -c"$CONNECTIONS" -d"${DRAIN_TIMEOUT_SECONDS}s" -s "$OUT/publish.lua" \
        "$topic_url" >"$OUT/queue-$broker.$build.wrk" 2>&1 &
    publisher=$!
    deadline=$((SECONDS + DRAIN_TIMEOUT_SECONDS))
    while :; do
        published=$(metric "$admin" 'nimbus_queue_published_total{function="admin"}')
        acked=$(metric "$admin" 'nimbus_queue_deliveries_total{function="noop",kind="acked"}')
        ((published >= MESSAGES && acked >= published)) && break
        kill -0 "$publisher" 2>/dev/null || { cat "$OUT/queue-$broker.$build.wrk" >&2; die "$broker: the publisher stopped"; }
        ((SECONDS < deadline)) || die "$broker: $acked of $published acknowledged after ${DRAIN_TIMEOUT_SECONDS}s"
        sleep 0.02
    done
    ended=$(date +%s.%N)
    kill "$publisher" 2>/dev/null || true
    wait "$publisher" 2>/dev/null || true
    stop_server
    [[ -n $prefix ]] && delete_streams "$prefix"
    result[queue.$broker.$build]=$(awk -v n="$published" -v a="$started" -v b="$ended" 'BEGIN { printf "%.0f", n / (b - a) }')
    result[published.$broker.$build]=$published
}

# delete_streams PREFIX: deletes the JetStream streams a NATS run made, with
# the plain NATS protocol (no client to install).
delete_streams() {
    local host=${NATS_URL#nats://}
    local port=${host##*:}
    host=${host%%:*}
    {
        exec 3<>"/dev/tcp/$host/$port"
        printf 'CONNECT {"verbose":false}\r\n' >&3
        for kind in queue dead replay; do
            printf 'PUB $JS.API.STREAM.DELETE.%s_%s_store-bench 0\r\n\r\n' "$1" "$kind" >&3
        done
        printf 'PING\r\n' >&3
        timeout 5 grep -q -m1 PONG <&3 || true
        exec 3>&-
    } 2>/dev/null || log "warning: could not delete the NATS streams under $1"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for build in "${builds[@]}"; do
    kv_scenarios "$build"
done
for build in "${builds[@]}"; do
    queue_scenario "$build" embedded
    [[ ${NATS:-1} == 0 ]] || queue_scenario "$build" nats
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ----------------------------------------------------------------------------

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
{
    echo "## Embedded store: group commit"
    echo
    echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $pinning;"
    echo "${DURATION}s per wrk run, $CONNECTIONS connections, a ${KV_VALUE_BYTES}-byte value, $MESSAGES messages;"
    echo "load average $load_before before, $load_after after."
    echo
    echo "| build | kv get/s | kv set/s | set/get | syncs per set | lone set/s | lone set p99 ms | set p99 ms at $CONNECTIONS | queue embedded msg/s | queue NATS msg/s | embedded/NATS |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for build in "${builds[@]}"; do
        nats=${result[queue.nats.$build]:-n/a}
        echo "| $(describe "$build") | ${result[get.$build]} | ${result[set.$build]} | $(ratio "${result[set.$build]}" "${result[get.$build]}") | ${result[per_set.$build]} (${result[syncs.$build]} for ${result[sets.$build]}) | ${result[set1.$build]} | ${result[set1p99.$build]} | ${result[setp99.$build]} | ${result[queue.embedded.$build]} | $nats | $(ratio "${result[queue.embedded.$build]}" "${nats/n\/a/0}") |"
    done
    if [[ -n $BASELINE ]]; then
        echo
        echo "Current against baseline, same run: kv set $(ratio "${result[set.current]}" "${result[set.baseline]}")x,"
        echo "lone set p99 $(ratio "${result[set1p99.current]}" "${result[set1p99.baseline]}")x (lower is better),"
        echo "queue embedded $(ratio "${result[queue.embedded.current]}" "${result[queue.embedded.baseline]}")x."
    fi
} | tee "$OUT/results.md"
