#!/usr/bin/env bash
# Restart time: how long `nimbus up` takes, with a warm compile cache, from the exec
# to the first answered request, for an app of 1 function and one of 50.
#
# Run with: benches/restart.sh
#
# Each app's functions are distinct components (the `hello` guest with a custom
# section naming the function), so every one is its own compile cache entry, as in a
# real app. The first start of each app fills the cache and is not counted. Settings
# (environment): RUNS restarts per app (default 10), SIZES app sizes (default "1 50").
# Timing is done by a small python3 program: it starts the server, reads its
# `listening on` line, sends `GET /f00` and waits for the 200.
set -euo pipefail

readonly RUNS=${RUNS:-10}
read -r -a SIZE_LIST <<<"${SIZES:-1 50}"
readonly SIZE_LIST
readonly GUEST_TARGET=wasm32-wasip2
# The custom section's name; its payload is the function's number.
readonly SECTION_NAME=nimbus-restart-bench

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT=$PWD
readonly OUT=$ROOT/target/restart

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is needed to time the restarts"
if command -v rustup >/dev/null; then
    rustup target add "$GUEST_TARGET" >/dev/null 2>&1 || die "rustup target add $GUEST_TARGET failed"
fi
log "building nimbus and the hello guest"
cargo build --release --quiet -p nimbus
cargo build --release --quiet --target "$GUEST_TARGET" -p hello
readonly HELLO=$ROOT/target/$GUEST_TARGET/release/hello.wasm
readonly NIMBUS=$ROOT/target/release/nimbus

rm -rf "$OUT"
mkdir -p "$OUT"

# make_app N: an app folder with N functions f00, f01, ... each at GET /fNN.
make_app() {
    local n=$1 dir=$OUT/app-$1 i name payload
    mkdir -p "$dir"
    printf 'version = 1\n\n[app]\nname = "restart-%d"\n' "$n" >"$dir/nimbus.toml"
    for ((i = 0; i < n; i++)); do
        name=$(printf 'f%02d' "$i")
        payload=$(printf '%03d' "$i")
        # A custom section: id 0, size, name length, name, payload (all sizes < 128,
        # so each LEB128 is one byte).
        {
            cat "$HELLO"
            printf '\x00'
            printf "\\x$(printf '%02x' $((1 + ${#SECTION_NAME} + ${#payload})))"
            printf "\\x$(printf '%02x' ${#SECTION_NAME})"
            printf '%s%s' "$SECTION_NAME" "$payload"
        } >"$dir/$name.wasm"
        printf '\n[functions.%s]\nsource = "%s.wasm"\nroutes = ["GET /%s"]\n' \
            "$name" "$name" "$name" >>"$dir/nimbus.toml"
    done
    echo "$dir"
}

# The timer: prints one line per start, the milliseconds to the `listening on` line
# and to the first 200.
cat >"$OUT/time_restart.py" <<'EOF'
import os, signal, socket, subprocess, sys, time

nimbus, app, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
env = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LOG", "NIMBUS_LOG")}
for _ in range(runs):
    started = time.monotonic()
    server = subprocess.Popen(
        [nimbus, "up", app, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    line = server.stdout.readline()
    if not line.startswith("listening on http://"):
        server.kill()
        sys.exit(f"unexpected first line from nimbus: {line!r}")
    listening = time.monotonic()
    host, port = line.strip().removeprefix("listening on http://").rsplit(":", 1)
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(b"GET /f00 HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    answered = time.monotonic()
    if not answer.startswith(b"HTTP/1.1 200"):
        server.kill()
        sys.exit(f"first request failed: {answer[:200]!r}")
    print(f"{(listening - started) * 1000:.1f} {(answered - started) * 1000:.1f}", flush=True)
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
EOF

summary() {
    sort -g | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.1f / %.1f / %.1f", v[1], m, v[NR]
    }'
}

results=()
for n in "${SIZE_LIST[@]}"; do
    app=$(make_app "$n")
    log "app of $n function(s): first start fills the compile cache"
    python3 "$OUT/time_restart.py" "$NIMBUS" "$app" 1 >"$OUT/cold-$n.txt"
    log "app of $n function(s): $RUNS restarts with a warm cache"
    python3 "$OUT/time_restart.py" "$NIMBUS" "$app" "$RUNS" >"$OUT/warm-$n.txt"
    results+=("| $n | $(cut -d' ' -f1 "$OUT/cold-$n.txt") / $(cut -d' ' -f2 "$OUT/cold-$n.txt") | $(cut -d' ' -f1 "$OUT/warm-$n.txt" | summary) | $(cut -d' ' -f2 "$OUT/warm-$n.txt" | summary) |")
done

{
    echo "Restart of \`nimbus up\`, $RUNS runs per app; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "| functions | cold cache: listening / first 200 (ms) | warm: listening min / median / max (ms) | warm: first 200 min / median / max (ms) |"
    echo "|---:|---:|---:|---:|"
    printf '%s\n' "${results[@]}"
} | tee "$OUT/results.md"
