#!/usr/bin/env bash
# `nimbus new` to the first 200, per template: the time from making the app
# to its route answering, through `nimbus up --build` (which builds the
# component, compiles it and serves it).
#
# Two cases per Rust template, registry cache warm (crates downloaded):
#   own target:    the app's own fresh target/, as a new user's first run
#                  (nimbus-sdk and its dependencies compile in release);
#   shared target: CARGO_TARGET_DIR already holding those dependencies, as
#                  every app after the first with a shared target folder
#                  (linked as the app's target/, where nimbus.toml looks).
#
# Usage: benches/new.sh   (NIMBUS=path to a release nimbus; default
# target/release/nimbus, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

NIMBUS=${NIMBUS:-$PWD/target/release/nimbus}
[[ -x $NIMBUS ]] || cargo build --release -p nimbus
work=$(mktemp -d)
trap 'pkill -P $$ || true; rm -rf "$work"' EXIT
shared=$work/shared-target

# first_200 TEMPLATE NAME PATH: seconds from `nimbus new` to a 200 from PATH.
first_200() {
    local template=$1 name=$2 path=$3 start end
    start=$(date +%s.%N)
    (cd "$work" && "$NIMBUS" new "$template" "$name" >/dev/null)
    # The manifest's `source` is under target/: point it at the shared one.
    if [[ -n ${CARGO_TARGET_DIR:-} ]]; then mkdir -p "$CARGO_TARGET_DIR"; ln -s "$CARGO_TARGET_DIR" "$work/$name/target"; fi
    (cd "$work/$name" && exec "$NIMBUS" up --build --listen 127.0.0.1:3900 --admin-listen 127.0.0.1:3901) \
        >"$work/$name.out" 2>"$work/$name.log" &
    local server=$!
    until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:3900$path") == 200 ]]; do
        kill -0 "$server" 2>/dev/null || die "$name: nimbus up exited: $(tail -5 "$work/$name.log")"
        sleep 0.05
    done
    end=$(date +%s.%N)
    kill "$server"; wait "$server" || true
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }'
}

printf '%-11s %-13s %s\n' TEMPLATE CASE 'SECONDS TO FIRST 200'
for template in http-rust queue-rust; do
    path=/hello/ada; [[ $template == queue-rust ]] && path=/events/signup
    unset CARGO_TARGET_DIR
    own=$(first_200 "$template" "own-${template%-rust}" "$path")
    # Warm the shared target folder once, then time a new app on it.
    export CARGO_TARGET_DIR=$shared
    first_200 "$template" "warm-${template%-rust}" "$path" >/dev/null
    warm=$(first_200 "$template" "shared-${template%-rust}" "$path")
    unset CARGO_TARGET_DIR
    printf '%-11s %-13s %s\n' "$template" "own target" "$own"
    printf '%-11s %-13s %s\n' "$template" "shared target" "$warm"
done
# Python and JavaScript: no target folder; componentize-py installed, npm's
# cache holding componentize-js (the build's `npm install` takes it from
# there), the compile cache empty (a fresh app has its own).
for template in http-python http-js; do
    printf '%-11s %-13s %s\n' "$template" "fresh app" "$(first_200 "$template" "new-${template#http-}" /hello/ada)"
done
