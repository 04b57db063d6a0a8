#!/usr/bin/env bash
# Load test: Nimbus serving the `hello` function against a native hyper server that
# sends the same response (benches/native-hello), measured with wrk over loopback.
#
# Run with: benches/load.sh
#
# Settings (environment): DURATION seconds per measured run (default 10), REPEATS runs
# per server (default 3), REQUEST_PATH (default /). Servers are pinned to CPU 0 and wrk
# to CPU 1 when there are two or more CPUs. The table reports the median of the repeats;
# every raw wrk report is kept under target/load/.
set -euo pipefail

readonly DURATION=${DURATION:-10}
readonly REPEATS=${REPEATS:-3}
readonly REQUEST_PATH=${REQUEST_PATH:-/}
readonly WARMUP_SECONDS=2
# One wrk thread is enough to saturate a one-CPU server; 16 connections keep it busy
# without measuring mostly queueing.
readonly WRK_THREADS=1
readonly WRK_CONNECTIONS=16
# How long a server may take to print its `listening on` line (Nimbus compiles the
# component at startup).
readonly READY_TIMEOUT_SECONDS=60
readonly GUEST_TARGET=wasm32-wasip2

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly OUT=target/load

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------------------

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

if ! command -v wrk >/dev/null; then
    log "installing wrk"
    as_root apt-get update -qq
    as_root apt-get install -y -qq wrk >/dev/null
fi
if command -v rustup >/dev/null; then
    rustup target add "$GUEST_TARGET" >/dev/null 2>&1 || die "rustup target add $GUEST_TARGET failed"
fi

server_cpu=() wrk_cpu=()
if [[ $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
    server_cpu=(taskset -c 0)
    wrk_cpu=(taskset -c 1)
    pinning="servers on CPU 0, wrk on CPU 1"
else
    pinning="no CPU pinning (needs 2+ CPUs and taskset)"
fi

# --- build -----------------------------------------------------------------------------

log "building nimbus, native-hello and the hello guest"
cargo build --release -p nimbus -p native-hello
cargo build --release --target "$GUEST_TARGET" -p hello

# --- servers ---------------------------------------------------------------------------

rm -rf "$OUT"
mkdir -p "$OUT"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server NAME COMMAND...: starts the server with its output in $OUT/NAME.{out,err}
# and sets `addr` to the address from its `listening on http://ADDR` line.
start_server() {
    local name=$1
    shift
    # Benchmark the servers' defaults: no backtrace capture, no extra logging.
    "${server_cpu[@]}" env -u RUST_BACKTRACE -u RUST_LOG "$@" \
        >"$OUT/$name.out" 2>"$OUT/$name.err" &
    local pid=$!
    pids+=("$pid")

    local deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
    addr=
    while [[ -z $addr ]]; do
        addr=$(sed -n 's|^listening on http://||p;T;q' "$OUT/$name.out")
        [[ -n $addr ]] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$OUT/$name.err" >&2
            die "$name exited before it was listening"
        fi
        if ((SECONDS >= deadline)); then
            cat "$OUT/$name.err" >&2
            die "$name printed no 'listening on http://ADDR' line within ${READY_TIMEOUT_SECONDS}s"
        fi
        sleep 0.1
    done
    case $addr in
        127.* | '[::1]':*) ;;
        *) die "$name listens on $addr, which is not a loopback address" ;;
    esac
    log "$name listening on http://$addr"
}

declare -A url
start_server nimbus target/release/nimbus up examples/hello --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0
url[nimbus]="http://$addr$REQUEST_PATH"
start_server native target/release/native-hello --listen 127.0.0.1:0
url[native]="http://$addr$REQUEST_PATH"
readonly servers=(nimbus native)

if command -v curl >/dev/null; then
    for server in "${servers[@]}"; do
        body=$(curl -fsS "${url[$server]}") || die "$server does not answer ${url[$server]} with a success"
        log "$server answers: $body"
    done
fi

# --- load ------------------------------------------------------------------------------

run_wrk() { "${wrk_cpu[@]}" wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" "$@"; }

for server in "${servers[@]}"; do
    log "warming up $server for ${WARMUP_SECONDS}s"
    run_wrk -d"${WARMUP_SECONDS}s" "${url[$server]}" >/dev/null
done

# Repeats alternate between the servers, so drift on the machine affects both alike.
for ((run = 1; run <= REPEATS; run++)); do
    for server in "${servers[@]}"; do
        log "run $run/$REPEATS: $server for ${DURATION}s"
        report="$OUT/$server.$run.wrk"
        run_wrk --latency -d"${DURATION}s" "${url[$server]}" >"$report"
        if grep -q 'Non-2xx or 3xx responses' "$report"; then
            cat "$report" >&2
            die "$server answered with errors; its numbers would be meaningless"
        fi
        if grep -q 'Socket errors' "$report"; then
            log "warning: $server: $(grep 'Socket errors' "$report" | sed 's/^ *//')"
        fi
    done
done

# --- report ----------------------------------------------------------------------------

# A wrk latency ("152.53us", "1.20ms", "2.00s", "1.00m") in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) ms = v / 1000
        else if (v ~ /ms$/) ms = v + 0
        else if (v ~ /s$/) ms = v * 1000
        else if (v ~ /m$/) ms = v * 60000
        else { print "cannot read latency " v > "/dev/stderr"; exit 1 }
        printf "%.3f\n", ms
    }'
}

# The median of the numbers on stdin, one a line.
median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}

# metric SERVER FIELD: FIELD (rps, p50, p99) of every run of SERVER, one a line.
metric() {
    local server=$1 field=$2 report
    for ((run = 1; run <= REPEATS; run++)); do
        report="$OUT/$server.$run.wrk"
        case $field in
            rps) awk '/^Requests\/sec:/ { print $2 }' "$report" ;;
            p50) to_ms "$(awk '$1 == "50%" { print $2 }' "$report")" ;;
            p99) to_ms "$(awk '$1 == "99%" { print $2 }' "$report")" ;;
        esac
    done
}

declare -A result
for server in "${servers[@]}"; do
    for field in rps p50 p99; do
        result[$server.$field]=$(metric "$server" "$field" | median)
    done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b == 0 ? 0 : a / b) }'; }

echo
echo "wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${DURATION}s, median of $REPEATS runs, $pinning"
echo
echo "| server | req/s | p50 ms | p99 ms |"
echo "|---|---:|---:|---:|"
for server in "${servers[@]}"; do
    printf '| %s | %.0f | %.3f | %.3f |\n' "$server" \
        "${result[$server.rps]}" "${result[$server.p50]}" "${result[$server.p99]}"
done
printf '| nimbus/native | %s | %s | %s |\n' \
    "$(ratio "${result[nimbus.rps]}" "${result[native.rps]}")" \
    "$(ratio "${result[nimbus.p50]}" "${result[native.p50]}")" \
    "$(ratio "${result[nimbus.p99]}" "${result[native.p99]}")"
