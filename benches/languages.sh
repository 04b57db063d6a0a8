#!/usr/bin/env bash
# The hello of each language side by side, in one run: the apps that
# `nimbus new http-rust`, `http-python` and `http-js` make (each answers
# GET /hello/:name with a greeting and a key-value visit count, so every
# request is a fresh instance and a key-value write), served by one release
# nimbus at a time, measured with wrk.
#
# Per language:
#   size        the built component
#   cold start  `nimbus up` to the first 200 with an empty compile cache
#               (compile, load, instantiate, answer)
#   warm start  the same from the compile cache `cold` filled
#   req/s, p99  wrk -t1 -c$CONNECTIONS -d$DURATION --latency on
#               /hello/ada, the median of $REPEATS rounds; each round
#               measures every language in turn, with a fresh instance per
#               request (the default) and with `instance_reuse = 1000`
#               (not for js: StarlingMonkey, componentize-js's engine, answers
#               only the first request of an instance, bytecodealliance/
#               StarlingMonkey#247; the second fails and ends the instance)
# The server runs on CPU 0 and wrk on CPU 1 when there are two CPUs.
#
# Usage: benches/languages.sh   (NIMBUS=path to a release nimbus; default
# target/release/nimbus, built if missing; DURATION default 10, REPEATS 3,
# CONNECTIONS 16). Needs wrk, componentize-py 0.25.1 on PATH, Node.js 20.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

readonly DURATION=${DURATION:-10} REPEATS=${REPEATS:-3} CONNECTIONS=${CONNECTIONS:-16}
NIMBUS=${NIMBUS:-$PWD/target/release/nimbus}
[[ -x $NIMBUS ]] || cargo build --release -p nimbus
command -v wrk >/dev/null || as_root apt-get install -y -qq wrk
command -v componentize-py >/dev/null || die "componentize-py is not on PATH (pip install componentize-py==0.25.1)"
work=$(mktemp -d)
trap 'pkill -P $$ || true; rm -rf "$work"' EXIT
reports=$PWD/target/languages
mkdir -p "$reports"

server_cpu=() wrk_cpu=()
if [[ $(nproc) -ge 2 ]]; then server_cpu=(taskset -c 0) wrk_cpu=(taskset -c 1); fi

readonly LANGUAGES=(rust python js)
for lang in "${LANGUAGES[@]}"; do
    log "making and building hello-$lang"
    (cd "$work" && "$NIMBUS" new "http-$lang" "hello-$lang" >/dev/null)
    (cd "$work/hello-$lang" && "$NIMBUS" build >"$work/build-$lang.log" 2>&1) ||
        die "hello-$lang did not build: $(tail -5 "$work/build-$lang.log")"
    # The same app with reused instances, in a manifest beside it.
    sed 's|^routes = .*|&\ninstance_reuse = 1000|' "$work/hello-$lang/nimbus.toml" \
        >"$work/hello-$lang/reuse.toml"
    grep -q '^instance_reuse' "$work/hello-$lang/reuse.toml" || die "hello-$lang: no routes line to add reuse to"
done

component() {
    case $1 in
        rust) echo "$work/hello-rust/target/wasm32-wasip2/release/hello_rust.wasm" ;;
        *) echo "$work/hello-$1/app.wasm" ;;
    esac
}

# serve LANG CACHE [MANIFEST]: starts nimbus on the app (its nimbus.toml,
# or MANIFEST in its folder) with a fresh state folder and the compile cache
# CACHE; leaves the seconds to the first 200 in $took and the server's pid
# in $server.
serve() {
    local lang=$1 cache=$2 manifest=${3:-nimbus.toml} start
    rm -rf "$work/state"
    start=$(date +%s.%N)
    "${server_cpu[@]}" "$NIMBUS" up "$work/hello-$lang/$manifest" --listen 127.0.0.1:3900 \
        --admin-listen 127.0.0.1:3901 --state-dir "$work/state" --cache-dir "$cache" \
        >/dev/null 2>"$work/$lang.log" &
    server=$!
    until [[ $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:3900/hello/ada) == 200 ]]; do
        kill -0 "$server" 2>/dev/null || die "hello-$lang: nimbus up exited: $(tail -5 "$work/$lang.log")"
        sleep 0.01
    done
    took=$(echo "$(date +%s.%N) - $start" | bc)
}

stop() { kill "$server"; wait "$server" || true; }

declare -A size cold warm
for lang in "${LANGUAGES[@]}"; do
    size[$lang]=$(stat -c %s "$(component "$lang")")
    rm -rf "$work/cache-$lang"
    serve "$lang" "$work/cache-$lang"; stop; cold[$lang]=$took
    serve "$lang" "$work/cache-$lang"; stop; warm[$lang]=$took
done

# p99 REPORT: wrk's 99th percentile latency, in ms.
p99() {
    awk '$1 == "99%" {
        v = $2; unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
        if (unit == "us") v /= 1000; else if (unit == "s") v *= 1000
        printf "%.2f", v }' "$1"
}

for round in $(seq 1 "$REPEATS"); do
    for lang in "${LANGUAGES[@]}"; do
        modes=(fresh reuse); [[ $lang == js ]] && modes=(fresh)
        for mode in "${modes[@]}"; do
            log "round $round: hello-$lang, $mode"
            manifest=nimbus.toml; [[ $mode == reuse ]] && manifest=reuse.toml
            serve "$lang" "$work/cache-$lang" "$manifest"
            "${wrk_cpu[@]}" wrk -t1 -c2 -d2s http://127.0.0.1:3900/hello/ada >/dev/null
            wrk_run "$reports/$lang-$mode-$round.txt" -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
                http://127.0.0.1:3900/hello/ada
            stop
        done
    done
done

# summary LANG MODE: the median req/s and p99 of the rounds.
summary() {
    local r
    printf '%.0f | %s ms' \
        "$(for r in $(seq 1 "$REPEATS"); do rate "$reports/$1-$2-$r.txt"; echo; done | median)" \
        "$(for r in $(seq 1 "$REPEATS"); do p99 "$reports/$1-$2-$r.txt"; echo; done | median)"
}

printf '\n| language | component | cold start | warm start | req/s fresh | p99 fresh | req/s reused | p99 reused |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for lang in "${LANGUAGES[@]}"; do
    printf '| %s | %.1f MB | %.2f s | %.3f s | %s | %s |\n' "$lang" \
        "$(echo "${size[$lang]} / 1000000" | bc -l)" "${cold[$lang]}" "${warm[$lang]}" \
        "$(summary "$lang" fresh)" "$(if [[ $lang == js ]]; then echo 'n/a | n/a'; else summary "$lang" reuse; fi)"
done
echo "(wrk reports in $reports)"
