#!/usr/bin/env bash
# Load test: Nimbus against `wasmtime serve` (same wasmtime version, same .wasm files)
# and a native hyper server, on loopback, measured with wrk.
#
# Run with: benches/load.sh
#
# Scenarios (SCENARIOS, default all four):
#   hello  GET, the `hello` guest ("Hello, world!")
#   echo   POST of a 16 KiB JSON document to the `echo` guest, which answers with the
#          request as JSON (so about 16 KiB back)
#   kv     GET of a 100-byte value through the `kv-store` guest (a redb read)
#   chain  GET through `caller`, which calls `hello` as an in-process service call
#          (a chain of depth 2)
#   p3     GET, a WASI 0.3 (wasi:http 0.3) hello, the `p3-next` guest (wasip3 0.10)
# Servers, each where it can run the scenario:
#   nimbus          `nimbus up`, a fresh instance per request
#   nimbus-reuse    `nimbus up`, functions with `instance_reuse = 1000`; for p3
#                   `instance_reuse = { requests = 128, concurrent = 16 }`
#   wasmtime        `wasmtime serve -Scli`, a fresh instance per request
#   wasmtime-reuse  `wasmtime serve -Scli --max-instance-reuse-count 1000`; for p3
#                   its WASI 0.3 defaults (128 requests per instance, 16 at once),
#                   and for p3 `wasmtime` is `--max-instance-reuse-count 1`
#   native          benches/native-hello (hyper, no WebAssembly)
#
# Settings (environment): DURATION seconds per measured run (default 10), REPEATS runs
# per server and scenario (default 3), CONNECTIONS (default 16), SCENARIOS, ACCESS_LOG (0 turns
# off Nimbus's per-request access log, which is on by default as in `nimbus up`). Servers run
# on CPU 0 and wrk on CPU 1 when there are two or more CPUs. The tables report the
# median of the repeats; every raw wrk report is kept under target/load/.
#
# What it needs, installed when missing: wrk (Debian package), wasmtime-cli
# $WASMTIME_VERSION (cargo install into target/bench-tools, which takes a while once),
# the wasm32-wasip2 target, curl.
set -euo pipefail

readonly DURATION=${DURATION:-10}
readonly REPEATS=${REPEATS:-3}
readonly CONNECTIONS=${CONNECTIONS:-16}
read -r -a SCENARIO_LIST <<<"${SCENARIOS:-hello echo kv chain p3}"
readonly SCENARIO_LIST
# The wasmtime release Nimbus embeds (Cargo.toml), so both run the same engine.
readonly WASMTIME_VERSION=48.0.8
readonly WARMUP_SECONDS=2
# One wrk thread saturates a one-CPU server; more would only compete for wrk's CPU.
readonly WRK_THREADS=1
# Requests each instance serves in the reuse modes, on both servers.
readonly REUSE_COUNT=1000
# The echo scenario's request body: a JSON document of exactly this many bytes.
readonly ECHO_BODY_BYTES=16384
# The kv scenario's stored value.
readonly KV_VALUE_BYTES=100
# How long a server may take to print its address (both compile the components at
# startup unless their caches are warm).
readonly READY_TIMEOUT_SECONDS=120
readonly GUEST_TARGET=wasm32-wasip2

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT=$PWD
readonly OUT=$ROOT/target/load
readonly TOOLS=$ROOT/target/bench-tools
readonly GUESTS=$ROOT/target/$GUEST_TARGET/release

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------------------

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

for tool in wrk curl; do
    if ! command -v "$tool" >/dev/null; then
        log "installing $tool"
        as_root apt-get update -qq
        as_root apt-get install -y -qq "$tool" >/dev/null
    fi
done
if command -v rustup >/dev/null; then
    rustup target add "$GUEST_TARGET" >/dev/null 2>&1 || die "rustup target add $GUEST_TARGET failed"
fi

WASMTIME=$TOOLS/bin/wasmtime
if ! "$WASMTIME" --version 2>/dev/null | grep -Eq "^wasmtime $WASMTIME_VERSION( |$)"; then
    log "installing wasmtime-cli $WASMTIME_VERSION into $TOOLS (once; it compiles for a while)"
    cargo install --locked --quiet wasmtime-cli --version "$WASMTIME_VERSION" --root "$TOOLS"
fi
readonly WASMTIME

server_cpu=() wrk_cpu=()
if [[ $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
    server_cpu=(taskset -c 0)
    wrk_cpu=(taskset -c 1)
    pinning="servers on CPU 0, wrk on CPU 1"
else
    pinning="no CPU pinning (needs 2+ CPUs and taskset)"
fi

# --- build -----------------------------------------------------------------------------

log "building nimbus, native-hello and the guests"
cargo build --release --quiet -p nimbus -p native-hello
cargo build --release --quiet --target "$GUEST_TARGET" -p hello -p echo -p kv-store -p caller -p p3-next
for guest in hello echo kv_store caller p3_next; do
    [[ -f $GUESTS/$guest.wasm ]] || die "missing $GUESTS/$guest.wasm"
done

rm -rf "$OUT"
mkdir -p "$OUT/app"

# The Nimbus app: every scenario twice, fresh and with instance reuse.
cat >"$OUT/app/nimbus.toml" <<EOF
version = 1

[app]
name = "load"

[functions.hello]
source = "$GUESTS/hello.wasm"
routes = ["GET /"]

[functions.hello-reuse]
source = "$GUESTS/hello.wasm"
routes = ["GET /reuse"]
instance_reuse = $REUSE_COUNT

[functions.echo]
source = "$GUESTS/echo.wasm"
routes = ["POST /echo"]

[functions.echo-reuse]
source = "$GUESTS/echo.wasm"
routes = ["POST /reuse/echo"]
instance_reuse = $REUSE_COUNT

[functions.kv]
source = "$GUESTS/kv_store.wasm"
routes = ["/kv/..."]
kv = ["bench"]

[functions.kv-reuse]
source = "$GUESTS/kv_store.wasm"
routes = ["/reuse/kv/..."]
kv = ["bench"]
instance_reuse = $REUSE_COUNT

[functions.caller]
source = "$GUESTS/caller.wasm"
routes = ["/call/..."]
services = ["hello"]

[functions.caller-reuse]
source = "$GUESTS/caller.wasm"
routes = ["/reuse/call/..."]
services = ["hello-reuse"]
instance_reuse = $REUSE_COUNT

[functions.p3]
source = "$GUESTS/p3_next.wasm"
routes = ["GET /p3"]

[functions.p3-reuse]
source = "$GUESTS/p3_next.wasm"
routes = ["GET /reuse/p3"]
instance_reuse = { requests = 128, concurrent = 16 }
EOF

# The echo body: a JSON document of exactly ECHO_BODY_BYTES bytes.
body='{"items":['
for ((i = 0; ${#body} < ECHO_BODY_BYTES - 200; i++)); do
    ((i > 0)) && body+=','
    body+=$(printf '{"id":%d,"name":"item-%06d","tags":["a","b"],"price_cents":%d}' "$i" "$i" $((i * 7 % 1000)))
done
body+='],"pad":"'
pad=$((ECHO_BODY_BYTES - ${#body} - 2))
body+=$(printf '%*s' "$pad" '' | tr ' ' x)
body+='"}'
printf '%s' "$body" >"$OUT/echo-body.json"
[[ $(wc -c <"$OUT/echo-body.json") -eq $ECHO_BODY_BYTES ]] || die "echo body is not $ECHO_BODY_BYTES bytes"
cat >"$OUT/echo.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open(os.getenv("ECHO_BODY_FILE"), "rb"))
wrk.body = file:read("*a")
file:close()
EOF

# --- servers ---------------------------------------------------------------------------

pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server NAME PATTERN COMMAND...: starts the server with its output in
# $OUT/NAME.{out,err} and sets `addr` to the address that follows PATTERN (a sed
# regular expression) in its output.
start_server() {
    local name=$1 pattern=$2
    shift 2
    : >"$OUT/$name.out"
    : >"$OUT/$name.err"
    # Benchmark the servers' defaults: no backtrace capture, no extra logging.
    "${server_cpu[@]}" env -u RUST_BACKTRACE -u RUST_LOG -u NIMBUS_LOG "$@" \
        >"$OUT/$name.out" 2>"$OUT/$name.err" &
    local pid=$!
    pids+=("$pid")

    local deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
    addr=
    while [[ -z $addr ]]; do
        addr=$(sed -n "s|^${pattern}\\([0-9.:]*\\).*|\\1|p;T;q" "$OUT/$name.out" "$OUT/$name.err")
        [[ -n $addr ]] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$OUT/$name.err" >&2
            die "$name exited before it was listening"
        fi
        if ((SECONDS >= deadline)); then
            cat "$OUT/$name.err" >&2
            die "$name printed no address within ${READY_TIMEOUT_SECONDS}s"
        fi
        sleep 0.1
    done
    case $addr in
        127.*) ;;
        *) die "$name listens on $addr, which is not a loopback address" ;;
    esac
    log "$name listening on http://$addr"
}

declare -A url

# Nimbus as `nimbus up` runs it, access log included, although wasmtime serve and
# native-hello write no line per request; ACCESS_LOG=0 measures it without.
if [[ ${ACCESS_LOG:-1} == 1 ]]; then nimbus_log=info; else nimbus_log=info,nimbus::access=off; fi
start_server nimbus 'listening on http://' \
    env NIMBUS_LOG="$nimbus_log" \
    "$ROOT/target/release/nimbus" up "$OUT/app" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0
nimbus=$addr
start_server native 'listening on http://' "$ROOT/target/release/native-hello" --listen 127.0.0.1:0
native=$addr

# wasmtime serve runs one component per process. `-Scli` gives the guests the WASI
# interfaces beyond the proxy world that a Rust std guest imports (environment, stdio),
# as Nimbus does.
serve=("$WASMTIME" serve -Scli --addr 127.0.0.1:0)
start_server wasmtime-hello 'Serving HTTP on http://' "${serve[@]}" "$GUESTS/hello.wasm"
url[hello.wasmtime]="http://$addr/"
start_server wasmtime-hello-reuse 'Serving HTTP on http://' \
    "${serve[@]}" --max-instance-reuse-count "$REUSE_COUNT" "$GUESTS/hello.wasm"
url[hello.wasmtime-reuse]="http://$addr/"
start_server wasmtime-echo 'Serving HTTP on http://' "${serve[@]}" "$GUESTS/echo.wasm"
url[echo.wasmtime]="http://$addr/echo"
start_server wasmtime-echo-reuse 'Serving HTTP on http://' \
    "${serve[@]}" --max-instance-reuse-count "$REUSE_COUNT" "$GUESTS/echo.wasm"
url[echo.wasmtime-reuse]="http://$addr/echo"
start_server wasmtime-p3 'Serving HTTP on http://' \
    "${serve[@]}" --max-instance-reuse-count 1 "$GUESTS/p3_next.wasm"
url[p3.wasmtime]="http://$addr/"
start_server wasmtime-p3-reuse 'Serving HTTP on http://' "${serve[@]}" "$GUESTS/p3_next.wasm"
url[p3.wasmtime-reuse]="http://$addr/"

url[hello.nimbus]="http://$nimbus/"
url[hello.nimbus-reuse]="http://$nimbus/reuse"
url[hello.native]="http://$native/"
url[echo.nimbus]="http://$nimbus/echo"
url[echo.nimbus-reuse]="http://$nimbus/reuse/echo"
url[echo.native]="http://$native/echo"
url[kv.nimbus]="http://$nimbus/kv/bench/key"
url[kv.nimbus-reuse]="http://$nimbus/reuse/kv/bench/key"
url[chain.nimbus]="http://$nimbus/call/hello/"
url[chain.nimbus-reuse]="http://$nimbus/reuse/call/hello-reuse/reuse"
url[p3.nimbus]="http://$nimbus/p3"
url[p3.nimbus-reuse]="http://$nimbus/reuse/p3"

# Why a server has no number for a scenario.
declare -A not_applicable=(
    [kv.wasmtime]="kv-store imports wasi:keyvalue/store@0.2.0-draft2 (Spin's version) and nimbus:function/keyvalue-ext; wasmtime serve -Skeyvalue implements wasi:keyvalue@0.2.0-draft and refuses to link it"
    [kv.native]="no native key-value server to compare with"
    [chain.wasmtime]="wasmtime serve has no in-process service calls"
    [chain.native]="no native service chain to compare with"
    [p3.native]="native-hello is the native counterpart of hello; see that row"
)
not_applicable[kv.wasmtime-reuse]=${not_applicable[kv.wasmtime]}
not_applicable[chain.wasmtime-reuse]=${not_applicable[chain.wasmtime]}

readonly SERVERS=(nimbus nimbus-reuse wasmtime wasmtime-reuse native)

head -c "$KV_VALUE_BYTES" /dev/zero | tr '\0' v >"$OUT/kv-value"
curl -fsS -X PUT --data-binary @"$OUT/kv-value" "http://$nimbus/kv/bench/key" \
    || die "cannot store the kv scenario's value"

# request SCENARIO URL: one request as wrk will make it, for the sanity check.
request() {
    case $1 in
        echo) curl -fsS -H 'content-type: application/json' --data-binary @"$OUT/echo-body.json" "$2" ;;
        *) curl -fsS "$2" ;;
    esac
}

for scenario in "${SCENARIO_LIST[@]}"; do
    case $scenario in hello | echo | kv | chain | p3) ;; *) die "unknown scenario $scenario" ;; esac
    for server in "${SERVERS[@]}"; do
        target=${url[$scenario.$server]:-}
        [[ -n $target ]] || continue
        answer=$(request "$scenario" "$target") || die "$server does not answer $scenario at $target"
        log "$scenario on $server: ${#answer} bytes, $(head -c 60 <<<"$answer" | tr -d '\n')"
    done
done

# --- load ------------------------------------------------------------------------------

export ECHO_BODY_FILE=$OUT/echo-body.json
run_wrk() {
    local scenario=$1
    shift
    local script=()
    [[ $scenario == echo ]] && script=(-s "$OUT/echo.lua")
    "${wrk_cpu[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" "${script[@]}" "$@"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for scenario in "${SCENARIO_LIST[@]}"; do
    for server in "${SERVERS[@]}"; do
        target=${url[$scenario.$server]:-}
        [[ -n $target ]] || continue
        log "warming up $server ($scenario) for ${WARMUP_SECONDS}s"
        run_wrk "$scenario" -d"${WARMUP_SECONDS}s" "$target" >/dev/null
    done
done

# Repeats go round every server and scenario in turn, so drift on the machine
# affects all of them alike.
for ((run = 1; run <= REPEATS; run++)); do
    for scenario in "${SCENARIO_LIST[@]}"; do
        for server in "${SERVERS[@]}"; do
            target=${url[$scenario.$server]:-}
            [[ -n $target ]] || continue
            log "run $run/$REPEATS: $scenario on $server for ${DURATION}s"
            report="$OUT/$scenario.$server.$run.wrk"
            run_wrk "$scenario" --latency -d"${DURATION}s" "$target" >"$report"
            if grep -q 'Non-2xx or 3xx responses' "$report"; then
                cat "$report" >&2
                die "$server answered $scenario with errors; its numbers would be meaningless"
            fi
            if grep -q 'Socket errors' "$report"; then
                log "warning: $server: $(grep 'Socket errors' "$report" | sed 's/^ *//')"
            fi
        done
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

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

# metric SCENARIO SERVER FIELD: FIELD (rps, p50, p99) of every run, one a line.
metric() {
    local report
    for ((run = 1; run <= REPEATS; run++)); do
        report="$OUT/$1.$2.$run.wrk"
        case $3 in
            rps) awk '/^Requests\/sec:/ { print $2 }' "$report" ;;
            p50) to_ms "$(awk '$1 == "50%" { print $2 }' "$report")" ;;
            p99) to_ms "$(awk '$1 == "99%" { print $2 }' "$report")" ;;
        esac
    done
}

declare -A result
for scenario in "${SCENARIO_LIST[@]}"; do
    for server in "${SERVERS[@]}"; do
        [[ -n ${url[$scenario.$server]:-} ]] || continue
        for field in rps p50 p99; do
            result[$scenario.$server.$field]=$(metric "$scenario" "$server" "$field" | median)
        done
    done
done

# ratio A B: A / B to two places, or n/a when either is missing.
ratio() {
    if [[ -z $1 || -z $2 ]]; then echo "n/a"; return; fi
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2fx\n", a / b }'
}
cell() {
    local v=${result[$1.$2.$3]:-}
    if [[ -z $v ]]; then echo "n/a"; elif [[ $3 == rps ]]; then printf '%.0f' "$v"; else printf '%.2f' "$v"; fi
}

report() {
    echo "wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s, median of $REPEATS runs; $pinning;" \
        "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')); kernel $(uname -r);" \
        "load average $load_before before, $load_after after"
    echo
    echo "Throughput (requests/s):"
    echo
    echo "| scenario | nimbus | nimbus reuse | wasmtime serve | wasmtime serve reuse | native | nimbus / wasmtime serve | nimbus / native | nimbus reuse / wasmtime serve reuse |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in "${SCENARIO_LIST[@]}"; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$s" \
            "$(cell "$s" nimbus rps)" "$(cell "$s" nimbus-reuse rps)" \
            "$(cell "$s" wasmtime rps)" "$(cell "$s" wasmtime-reuse rps)" "$(cell "$s" native rps)" \
            "$(ratio "${result[$s.nimbus.rps]:-}" "${result[$s.wasmtime.rps]:-}")" \
            "$(ratio "${result[$s.nimbus.rps]:-}" "${result[$s.native.rps]:-}")" \
            "$(ratio "${result[$s.nimbus-reuse.rps]:-}" "${result[$s.wasmtime-reuse.rps]:-}")"
    done
    echo
    echo "Latency at $CONNECTIONS connections, p50 / p99 (ms):"
    echo
    echo "| scenario | nimbus | nimbus reuse | wasmtime serve | wasmtime serve reuse | native | p99 nimbus / wasmtime serve |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for s in "${SCENARIO_LIST[@]}"; do
        row="| $s |"
        for server in "${SERVERS[@]}"; do
            if [[ -n ${result[$s.$server.p50]:-} ]]; then
                row+=" $(cell "$s" "$server" p50) / $(cell "$s" "$server" p99) |"
            else
                row+=" n/a |"
            fi
        done
        row+=" $(ratio "${result[$s.nimbus.p99]:-}" "${result[$s.wasmtime.p99]:-}") |"
        echo "$row"
    done
    echo
    echo "n/a:"
    for s in "${SCENARIO_LIST[@]}"; do
        for server in wasmtime native; do
            [[ -n ${not_applicable[$s.$server]:-} ]] && echo "- $s on $server: ${not_applicable[$s.$server]}"
        done
    done
    return 0
}

echo
report | tee "$OUT/results.md"
