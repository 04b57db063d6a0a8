#!/usr/bin/env bash
# Instruction counts per request, with valgrind's callgrind: stable on a busy machine,
# where wall-clock timings are not, so each optimisation can be judged by them.
#
# Run with: benches/profile.sh [inproc|server]...   (default: both)
#
#   inproc  the criterion bench binary's loop mode (host/benches/invoke.rs): hello
#           invoked in-process, store + instantiate + call + body, fresh instances
#           (and with NIMBUS_BENCH_REUSE=1, reused ones). Two runs of different
#           lengths; the difference divided by the extra calls is the cost of one.
#   server  `nimbus up` with hello under callgrind; counters zeroed after a warm-up,
#           then REQUESTS requests over one keep-alive connection (curl), then a dump:
#           everything the server does per request (hyper, routing, headers, the
#           invocation), divided by REQUESTS.
#
# Settings (environment): REQUESTS (default 2000), NIMBUS_BENCH_REUSE, NIMBUS_LOG (server
# only; default info, which includes the access log).
# Reports and annotated profiles go to target/profile/ (under CARGO_TARGET_DIR if set).
set -euo pipefail
# Measure what a server runs like: a set RUST_BACKTRACE makes every wasmtime error
# capture a backtrace, and wasmtime makes one per store even on the happy path.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

readonly REQUESTS=${REQUESTS:-2000}
# Loop lengths of the in-process runs; their difference is what is counted.
readonly SHORT_LOOP=200
readonly LONG_LOOP=$((SHORT_LOOP + REQUESTS))
# Requests before the counters are zeroed: first use of pool slots, lazy setup.
readonly SERVER_WARMUP=200
# valgrind runs the server some 50 times slower; it still starts within this.
readonly READY_TIMEOUT_SECONDS=300
readonly GUEST_TARGET=wasm32-wasip2
# valgrind cannot reserve the address space of the default pool (1000 instances of up
# to 4 GiB memories); 3 instances is the most it can, and the per-instance work of the
# pooling allocator is the same at any size.
readonly VALGRIND_POOL_INSTANCES=3

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT=$PWD
# Where cargo puts what it builds (CARGO_TARGET_DIR, as cargo reads it).
readonly TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
readonly OUT=$TARGET/profile
mkdir -p "$OUT"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v valgrind >/dev/null || die "valgrind is needed (apt-get install valgrind)"
# wasmtime writes machine code at run time; have valgrind check for it everywhere.
readonly CALLGRIND=(valgrind --tool=callgrind --smc-check=all-non-file)
reuse=${NIMBUS_BENCH_REUSE:-0}
mode=$([[ $reuse == 1 ]] && echo reuse || echo fresh)

# total FILE: the instruction count a callgrind output file records.
total() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }

inproc() {
    log "building the bench binary"
    local bin
    bin=$(cargo bench -p nimbus --bench invoke --no-run 2>&1 |
        sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
    [[ -x $bin ]] || die "cannot find the invoke bench binary"
    local n
    for n in "$SHORT_LOOP" "$LONG_LOOP"; do
        log "in-process: $n invocations ($mode) under callgrind"
        NIMBUS_BENCH_LOOP=$n NIMBUS_BENCH_REUSE=$reuse NIMBUS_BENCH_POOL_INSTANCES=$VALGRIND_POOL_INSTANCES \
            "${CALLGRIND[@]}" --callgrind-out-file="$OUT/inproc-$mode-$n.out" "$bin" \
            >"$OUT/inproc-$mode-$n.stdout" 2>"$OUT/inproc-$mode-$n.log"
        grep -q 'pooling: true' "$OUT/inproc-$mode-$n.stdout" ||
            die "the bench ran without the pooling allocator: $(cat "$OUT/inproc-$mode-$n.stdout")"
    done
    local short long
    short=$(total "$OUT/inproc-$mode-$SHORT_LOOP.out")
    long=$(total "$OUT/inproc-$mode-$LONG_LOOP.out")
    callgrind_annotate --inclusive=yes "$OUT/inproc-$mode-$LONG_LOOP.out" >"$OUT/inproc-$mode.annotated" 2>/dev/null || true
    echo "in-process hello ($mode): $(((long - short) / REQUESTS)) instructions per invocation"
}

server() {
    log "building nimbus and the hello guest"
    cargo build --release --quiet -p nimbus
    cargo build --release --quiet --target "$GUEST_TARGET" -p hello
    local app=$OUT/app
    mkdir -p "$app"
    local reuse_line=""
    [[ $reuse == 1 ]] && reuse_line="instance_reuse = 1000"
    cat >"$app/nimbus.toml" <<EOF
version = 1
[app]
name = "profile"
[functions.hello]
source = "$TARGET/$GUEST_TARGET/release/hello.wasm"
routes = ["GET /"]
$reuse_line
EOF
    log "server: nimbus up under callgrind ($mode)"
    rm -f "$OUT"/server-"$mode".out*
    : >"$OUT/server-$mode.stdout"
    env -u RUST_BACKTRACE NIMBUS_LOG="${NIMBUS_LOG:-info}" "${CALLGRIND[@]}" --callgrind-out-file="$OUT/server-$mode.out" \
        "$TARGET/release/nimbus" up "$app" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --pool-instances "$VALGRIND_POOL_INSTANCES" --state-dir "$(mktemp -d)" \
        >"$OUT/server-$mode.stdout" 2>"$OUT/server-$mode.log" &
    server_pid=$!
    local pid=$server_pid addr="" deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
    trap 'kill "$server_pid" 2>/dev/null || true' EXIT
    while [[ -z $addr ]]; do
        addr=$(sed -n 's|^listening on http://||p;T;q' "$OUT/server-$mode.stdout")
        kill -0 "$pid" 2>/dev/null || die "nimbus exited; see $OUT/server-$mode.log"
        ((SECONDS < deadline)) || die "nimbus did not listen within ${READY_TIMEOUT_SECONDS}s"
        [[ -n $addr ]] || sleep 0.5
    done
    # The log is written by a background thread: give its line a moment to land.
    local tries
    for tries in {1..50}; do
        grep -Eq 'pooling.{0,16}(true|false)' "$OUT/server-$mode.log" && break
        sleep 0.2
    done
    grep -Eq 'pooling.{0,16}true' "$OUT/server-$mode.log" ||
        die "nimbus runs without the pooling allocator; see $OUT/server-$mode.log"
    curl -fsS -o /dev/null "http://$addr/?[1-$SERVER_WARMUP]"
    callgrind_control --zero "$pid" >/dev/null
    curl -fsS -o /dev/null "http://$addr/?[1-$REQUESTS]"
    callgrind_control --dump="measured" "$pid" >/dev/null
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    trap - EXIT
    local dump
    dump=$(grep -l '^desc: Trigger: .*measured' "$OUT"/server-"$mode".out* | head -1)
    [[ -n $dump ]] || die "no callgrind dump found"
    callgrind_annotate --inclusive=yes "$dump" >"$OUT/server-$mode.annotated" 2>/dev/null || true
    echo "server hello ($mode): $(($(total "$dump") / REQUESTS)) instructions per request"
}

what=("$@")
[[ ${#what[@]} -gt 0 ]] || what=(inproc server)
for w in "${what[@]}"; do
    case $w in
        inproc) inproc ;;
        server) server ;;
        *) die "unknown profile $w (inproc or server)" ;;
    esac
done | tee -a "$OUT/results.txt"
