# Helpers the bench scripts share; sourced, not run.

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# rate WRK_REPORT: its requests per second, whole.
rate() { awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$1"; }

# The median of the numbers on stdin, one a line (the mean of the middle two
# for an even count).
median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}

# write_wrk_scripts DIR: DIR/put.lua (a PUT of the file $KV_VALUE_FILE) and
# DIR/publish.lua (POSTs a JSON message until $MESSAGES answers came back,
# each a 202, else it fails).
write_wrk_scripts() {
    cat >"$1/put.lua" <<'EOF'
wrk.method = "PUT"
local file = assert(io.open(os.getenv("KV_VALUE_FILE"), "rb"))
wrk.body = file:read("*a")
file:close()
EOF
    cat >"$1/publish.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"order":1}'
local limit = tonumber(os.getenv("MESSAGES"))
local answered = 0
response = function(status)
    if status ~= 202 then
        io.stderr:write("publish answered " .. status .. "\n")
        os.exit(1)
    end
    answered = answered + 1
    if answered >= limit then wrk.thread:stop() end
end
EOF
}

# wrk_run REPORT WRK_ARGS...: wrk (under the script's `wrk_cpu` prefix, e.g.
# taskset, if it sets one) with its report in REPORT; a non-2xx answer fails
# the bench, since its numbers would be meaningless.
wrk_run() {
    local report=$1
    shift
    "${wrk_cpu[@]}" wrk "$@" >"$report"
    if grep -q 'Non-2xx or 3xx responses' "$report"; then
        cat "$report" >&2
        die "errors in $report; its numbers would be meaningless"
    fi
}

# metric ADMIN NAME: the value of metric NAME (with its labels) at the admin
# listener ADMIN (host:port), 0 when absent.
metric() {
    curl -fsS "http://$1/metrics" | awk -v name="$2" '$1 == name { printf "%d", $2; found = 1 }
        END { if (!found) printf "0" }'
}

# install_missing TOOL...: each tool not on PATH, from the Debian package of
# the same name.
install_missing() {
    local tool
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null; then
            log "installing $tool"
            as_root apt-get update -qq
            as_root apt-get install -y -qq "$tool" >/dev/null
        fi
    done
}

# pin_cpus: sets `server_cpu` and `wrk_cpu` (command prefixes) to CPUs 0 and
# 1 when there are two or more and taskset exists, and `pinning` to say which.
pin_cpus() {
    server_cpu=() wrk_cpu=()
    if [[ $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
        server_cpu=(taskset -c 0)
        wrk_cpu=(taskset -c 1)
        pinning="server on CPU 0, wrk on CPU 1"
    else
        pinning="no CPU pinning (needs 2+ CPUs and taskset)"
    fi
}

# p99_ms WRK_REPORT: the 99th percentile of its latency distribution (wrk
# --latency), in milliseconds, with no newline.
p99_ms() {
    awk '$1 == "99%" {
        v = $2; unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
        if (unit == "us") v /= 1000; else if (unit == "s") v *= 1000
        printf "%.2f", v }' "$1"
}

# stop_server: stops the server whose process id is in `pid` (SIGTERM, then
# waits for it), if one runs. The scripts trap it on EXIT.
stop_server() {
    if [[ -n ${pid:-} ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=
    fi
}
