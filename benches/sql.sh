#!/usr/bin/env bash
# SQLite and PostgreSQL through a function against the key-value capability,
# in one run: a point read and an insert at CONNECTIONS connections each way.
#
# Run with: benches/sql.sh
#
# One `nimbus up` (release build, a fresh instance per request) serves both:
#   kv-read     wrk GET of a 100-byte value through the `kv-store` guest (wasi:keyvalue)
#   sql-read    wrk GET of the same value through `sql-probe`: `SELECT value FROM kv
#               WHERE key = ?` on a SQLite table `kv (key TEXT PRIMARY KEY, value BLOB)`
#   kv-insert   wrk PUT of a 100-byte value to a new key each request
#   sql-insert  the same through `sql-probe`: `INSERT OR REPLACE INTO kv ...`, one
#               durable commit (WAL, synchronous=FULL) per request
#   pg-read     the read through `pg-probe`: `SELECT value FROM kv WHERE key = $1`
#               on PostgreSQL, table `kv (key text PRIMARY KEY, value bytea)`
#   pg-insert   the insert through `pg-probe`: `INSERT ... ON CONFLICT DO UPDATE`,
#               committed (PostgreSQL's defaults: synchronous_commit on, fsync)
# ROUNDS rounds, the scenarios in turn (the order reversed every other round),
# medians.
#
# PostgreSQL is the machine's server (PG_URL, default
# postgres://postgres@127.0.0.1:5432/test); the script makes a database of its
# own there and drops it at the end. The server's processes are not pinned: on
# two CPUs they share them with nimbus and wrk.
#
# Settings (environment): DURATION seconds per wrk run (default 10), CONNECTIONS
# (default 16), ROUNDS (default 2). The server runs on CPU 0 and wrk on CPU 1
# when there are two or more CPUs. Raw reports are kept under target/sql-bench/.
#
# What it needs, installed when missing: wrk (a Debian package), curl, the
# wasm32-wasip2 target.
set -euo pipefail

readonly DURATION=${DURATION:-10}
readonly CONNECTIONS=${CONNECTIONS:-16}
readonly ROUNDS=${ROUNDS:-2}
readonly VALUE_BYTES=100
readonly WARMUP_SECONDS=2
readonly READY_TIMEOUT_SECONDS=120
readonly GUEST_TARGET=wasm32-wasip2

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT=$PWD
readonly OUT=$ROOT/target/sql-bench
readonly GUESTS=$ROOT/target/$GUEST_TARGET/release

# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

install_missing wrk curl
if command -v rustup >/dev/null; then
    rustup target add "$GUEST_TARGET" >/dev/null 2>&1 || die "rustup target add $GUEST_TARGET failed"
fi
pin_cpus

log "building nimbus and the guests"
cargo build --release --quiet -p nimbus
cargo build --release --quiet --target "$GUEST_TARGET" -p kv-store -p sql-probe -p pg-probe
for guest in kv_store sql_probe pg_probe; do
    [[ -f $GUESTS/$guest.wasm ]] || die "missing $GUESTS/$guest.wasm"
done

readonly PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
readonly PG_DB=nimbus_bench_$$
command -v psql >/dev/null || die "psql is needed (Debian: postgresql-client)"
psql -q "$PG_URL" -c "CREATE DATABASE $PG_DB" || die "cannot create a database at $PG_URL"
readonly PG_BENCH_URL=${PG_URL%/*}/$PG_DB
psql -q "$PG_BENCH_URL" -c "CREATE TABLE kv (key text PRIMARY KEY, value bytea NOT NULL)"
drop_database() { psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" || true; }

rm -rf "$OUT"
mkdir -p "$OUT/sql"
head -c "$VALUE_BYTES" /dev/zero | tr '\0' v >"$OUT/value"
export VALUE_FILE=$OUT/value
cat >"$OUT/sql/001_kv.sql" <<'EOF'
CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
EOF
cat >"$OUT/nimbus.toml" <<EOF
version = 1

[app]
name = "sql-bench"

[sqlite.bench]
migrations = "sql"

[functions.kv]
source = "$GUESTS/kv_store.wasm"
routes = ["/kv/..."]
kv = ["bench"]

[functions.sql]
source = "$GUESTS/sql_probe.wasm"
routes = ["/sql/..."]
sqlite = ["bench"]

[functions.pg]
source = "$GUESTS/pg_probe.wasm"
routes = ["/pg/..."]
postgres = { bench = { url = "$PG_BENCH_URL", pool = $CONNECTIONS } }
EOF
# A PUT of the value to a new key per request: `$KEY_PREFIX-<n>`.
cat >"$OUT/insert.lua" <<'EOF'
local prefix = os.getenv("KEY_PREFIX") or "k"
local file = assert(io.open(os.getenv("VALUE_FILE"), "rb"))
local body = file:read("*a")
file:close()
local n = 0
request = function()
    n = n + 1
    return wrk.format("PUT", wrk.path .. prefix .. "-" .. n, nil, body)
end
EOF

pid=
trap 'stop_server; drop_database' EXIT
trap 'exit 130' INT TERM

"${server_cpu[@]}" env -u RUST_BACKTRACE -u RUST_LOG -u NIMBUS_LOG \
    "$ROOT/target/release/nimbus" up "$OUT/nimbus.toml" --state-dir "$OUT/state" \
    --listen 127.0.0.1:0 >"$OUT/server.out" 2>"$OUT/server.err" &
pid=$!
deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
public=
while [[ -z $public ]]; do
    public=$(sed -n 's|^listening on http://\([0-9.:]*\).*|\1|p' "$OUT/server.out" | head -1)
    kill -0 "$pid" 2>/dev/null || { cat "$OUT/server.err" >&2; die "nimbus exited before it was listening"; }
    ((SECONDS < deadline)) || { cat "$OUT/server.err" >&2; die "nimbus printed no address in time"; }
    sleep 0.1
done

declare -A url=(
    [kv-read]="http://$public/kv/bench/key"
    [sql-read]="http://$public/sql/bench/kv/key"
    [kv-insert]="http://$public/kv/bench/"
    [sql-insert]="http://$public/sql/bench/kv/"
    [pg-read]="http://$public/pg/bench/kv/key"
    [pg-insert]="http://$public/pg/bench/kv/"
)
readonly SCENARIOS=(kv-read sql-read pg-read kv-insert sql-insert pg-insert)
for kind in kv sql pg; do
    curl -fsS -X PUT --data-binary @"$OUT/value" "${url[$kind-read]}" || die "cannot store the $kind value"
    [[ $(curl -fsS "${url[$kind-read]}") == "$(cat "$OUT/value")" ]] || die "the $kind value does not read back"
done

run() {
    local scenario=$1 round=$2 args=()
    [[ $scenario == *-insert ]] && args=(-s "$OUT/insert.lua")
    log "round $round: $scenario, $CONNECTIONS connections"
    KEY_PREFIX="r$round" wrk_run "$OUT/$scenario.$round.wrk" -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
        "${args[@]}" "${url[$scenario]}"
}
for scenario in "${SCENARIOS[@]}"; do
    args=()
    [[ $scenario == *-insert ]] && args=(-s "$OUT/insert.lua")
    KEY_PREFIX=warmup wrk_run /dev/null -t1 -c"$CONNECTIONS" -d"${WARMUP_SECONDS}s" "${args[@]}" "${url[$scenario]}"
done
for round in $(seq 1 "$ROUNDS"); do
    order=("${SCENARIOS[@]}")
    if ! ((round % 2)); then order=(pg-read sql-read kv-read pg-insert sql-insert kv-insert); fi
    for scenario in "${order[@]}"; do run "$scenario" "$round"; done
done
stop_server

declare -A rps p99
for scenario in "${SCENARIOS[@]}"; do
    # `rate` and `p99_ms` print no newline; `median` reads one number a line.
    rps[$scenario]=$(for r in $(seq 1 "$ROUNDS"); do rate "$OUT/$scenario.$r.wrk"; echo; done | median)
    p99[$scenario]=$(for r in $(seq 1 "$ROUNDS"); do p99_ms "$OUT/$scenario.$r.wrk"; echo; done | median)
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

cat <<EOF

SQLite and PostgreSQL against key-value through a function ($(nproc) CPUs, $pinning;
$CONNECTIONS connections, ${DURATION}s per run, median of $ROUNDS rounds; nimbus $(git rev-parse --short HEAD);
$(psql -Atq "$PG_URL" -c 'SHOW server_version' | sed 's/^/PostgreSQL /;s/ (.*//')):

| operation | key-value req/s | p99 | SQLite req/s | p99 | SQLite / kv | PostgreSQL req/s | p99 | PostgreSQL / kv |
|---|---|---|---|---|---|---|---|---|
| point read | ${rps[kv-read]} | ${p99[kv-read]} ms | ${rps[sql-read]} | ${p99[sql-read]} ms | $(ratio "${rps[sql-read]}" "${rps[kv-read]}")x | ${rps[pg-read]} | ${p99[pg-read]} ms | $(ratio "${rps[pg-read]}" "${rps[kv-read]}")x |
| insert | ${rps[kv-insert]} | ${p99[kv-insert]} ms | ${rps[sql-insert]} | ${p99[sql-insert]} ms | $(ratio "${rps[sql-insert]}" "${rps[kv-insert]}")x | ${rps[pg-insert]} | ${p99[pg-insert]} ms | $(ratio "${rps[pg-insert]}" "${rps[kv-insert]}")x |
EOF
