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
