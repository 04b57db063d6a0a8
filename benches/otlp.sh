#!/usr/bin/env bash
# What exporting traces costs: wrk GET /hello/bench against `nimbus up` with
# --otlp-endpoint (a receiver that answers and keeps nothing,
# tests/otlp/receiver.py --discard) and without, in rounds of one run. Each
# round runs both, in ABBA order (off then on, then on then off) so a drift
# of the machine's speed falls on both alike; the result is the median of
# the rounds' ratios, beside the medians of requests/s and of the server's
# CPU time per request (user + system, from /proc).
#
# Run with: benches/otlp.sh
#
# On a machine with 2 or more cores the server runs on CPU 0, wrk and the
# receiver on CPU 1 (taskset). Settings (environment): DURATION seconds per
# wrk run (default 10), CONNECTIONS (default 64), ROUNDS (default 6). Raw
# reports are kept under target/otlp-bench/. Needs, installed when missing:
# wrk (Debian package), curl, and the receiver's opentelemetry-proto (PyPI).
set -euo pipefail

readonly DURATION=${DURATION:-10}
readonly CONNECTIONS=${CONNECTIONS:-64}
readonly ROUNDS=${ROUNDS:-6}
readonly CLK_TCK=$(getconf CLK_TCK)
readonly READY_TIMEOUT_SECONDS=120
readonly GUEST_TARGET=wasm32-wasip2

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT=$PWD
readonly OUT=$ROOT/target/otlp-bench
readonly GUESTS=$ROOT/target/$GUEST_TARGET/release
readonly NIMBUS=$ROOT/target/release/nimbus

# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

for pkg in wrk:wrk curl:curl; do
    command -v "${pkg%%:*}" >/dev/null || {
        log "installing ${pkg#*:}"
        as_root apt-get update -qq
        as_root apt-get install -y -qq "${pkg#*:}" >/dev/null
    }
done
python3 -c 'import opentelemetry.proto' 2>/dev/null || python3 -m pip install -q opentelemetry-proto
rustup target add "$GUEST_TARGET" >/dev/null 2>&1 || true

server_cpu=() wrk_cpu=()
if (($(nproc) >= 2)); then
    server_cpu=(taskset -c 0)
    wrk_cpu=(taskset -c 1)
fi

log "building nimbus and hello"
cargo build --release --quiet -p nimbus
cargo build --release --quiet --target "$GUEST_TARGET" -p hello

rm -rf "$OUT"
mkdir -p "$OUT"
cat >"$OUT/nimbus.toml" <<EOF
version = 1

[app]
name = "otlp-bench"

[functions.hello]
source = "$GUESTS/hello.wasm"
routes = ["GET /hello/:name"]
EOF

servers=() receiver_pid=
stop_servers() {
    for p in "${servers[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${servers[@]}"; do wait "$p" 2>/dev/null || true; done
    servers=()
}
trap 'stop_servers; [[ -z $receiver_pid ]] || kill "$receiver_pid" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

"${wrk_cpu[@]}" python3 "$ROOT/tests/otlp/receiver.py" --discard >"$OUT/receiver.out" &
receiver_pid=$!
until grep -q '^listening on ' "$OUT/receiver.out"; do sleep 0.1; done
receiver="http://127.0.0.1:$(sed -n 's/^listening on //p' "$OUT/receiver.out")"

# cpu_ticks PID: the user and system CPU time PID has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run NAME [NIMBUS ARGS...]: one `nimbus up`, warmed up, then measured; sets
# public and admin to its addresses, and cpu_us to its CPU microseconds per
# request while measured, and leaves it running in `servers`.
run() {
    local name=$1
    shift
    rm -rf "$OUT/state-$name"
    : >"$OUT/$name.out"
    "${server_cpu[@]}" env -u RUST_BACKTRACE -u RUST_LOG -u NIMBUS_LOG -u NIMBUS_OTLP_ENDPOINT \
        "$NIMBUS" up "$OUT/nimbus.toml" --state-dir "$OUT/state-$name" \
        --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" \
        >"$OUT/$name.out" 2>"$OUT/$name.err" &
    local pid=$! deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
    public= admin=
    while [[ -z $public || -z $admin ]]; do
        public=$(sed -n 's|^listening on http://\([0-9.:]*\).*|\1|p' "$OUT/$name.out")
        admin=$(sed -n 's|^admin listening on http://\([0-9.:]*\).*|\1|p' "$OUT/$name.out")
        kill -0 "$pid" 2>/dev/null || { cat "$OUT/$name.err" >&2; die "$name exited"; }
        ((SECONDS < deadline)) || die "$name printed no address in time"
        sleep 0.1
    done
    servers+=("$pid")
    wrk_run /dev/null -t1 -c"$CONNECTIONS" -d2s "http://$public/hello/bench"
    local ticks
    ticks=$(cpu_ticks "$pid")
    wrk_run "$OUT/$name.wrk" -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://$public/hello/bench"
    ticks=$(($(cpu_ticks "$pid") - ticks))
    cpu_us=$(awk -v t="$ticks" -v hz="$CLK_TCK" '/ requests in / { printf "%.1f", t / hz * 1e6 / $1 }' "$OUT/$name.wrk")
}

# measure off|on ROUND: one server without or with traces, measured and
# stopped; its requests/s and CPU per request go on the lists.
measure() {
    local round=$2
    if [[ $1 == off ]]; then
        log "round $round of $ROUNDS: without traces"
        run "off-$round"
        off+=("$(rate "$OUT/off-$round.wrk")") off_cpu+=("$cpu_us")
    else
        log "round $round of $ROUNDS: with --otlp-endpoint $receiver"
        run "on-$round" --otlp-endpoint "$receiver"
        on+=("$(rate "$OUT/on-$round.wrk")") on_cpu+=("$cpu_us")
        sleep 1
        exported=$((exported + $(metric "$admin" nimbus_otlp_spans_exported_total)))
        dropped=$((dropped + $(metric "$admin" nimbus_otlp_spans_dropped_total)))
    fi
    stop_servers
}

off=() on=() off_cpu=() on_cpu=() ratios=() exported=0 dropped=0
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$ROUNDS"); do
    if ((round % 2)); then
        measure off "$round"
        measure on "$round"
    else
        measure on "$round"
        measure off "$round"
    fi
    ratios+=("$(awk -v a="${on[-1]}" -v b="${off[-1]}" 'BEGIN { printf "%.3f", a / b }')")
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

off_median=$(printf '%s\n' "${off[@]}" | median)
on_median=$(printf '%s\n' "${on[@]}" | median)
ratio_median=$(printf '%s\n' "${ratios[@]}" | median)
off_cpu_median=$(printf '%s\n' "${off_cpu[@]}" | median)
on_cpu_median=$(printf '%s\n' "${on_cpu[@]}" | median)
{
    echo "## Traces exported over OTLP, $(date -u +%Y-%m-%d)"
    echo
    echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load $load_before before, $load_after after."
    echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s GET /hello/bench, $ROUNDS rounds in ABBA order, medians."
    echo
    echo "| | req/s per round | median | CPU µs per request, per round | median |"
    echo "|---|---|---|---|---|"
    echo "| without traces | ${off[*]} | $off_median | ${off_cpu[*]} | $off_cpu_median |"
    echo "| --otlp-endpoint | ${on[*]} | $on_median | ${on_cpu[*]} | $on_cpu_median |"
    echo
    echo "with traces / without, per round: ${ratios[*]}"
    awk -v r="$ratio_median" 'BEGIN { printf "median of the rounds: %.3fx (%.1f%% lower)\n", r, (1 - r) * 100 }'
    awk -v a="$on_cpu_median" -v b="$off_cpu_median" 'BEGIN { printf "CPU per request with traces / without: %.3fx\n", a / b }'
    echo "spans exported: $exported, dropped: $dropped"
} | tee "$OUT/results.md"
