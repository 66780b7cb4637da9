#!/usr/bin/env bash
# run-health.sh: unary Health/Check benchmark, gateway against the echo
# baseline, plaintext and mTLS, on loopback.
#
# One run builds what is missing, makes throwaway certificates (EC P-256),
# starts the echo server and the gateway pinned to one core, drives each with
# sgbench pinned to another core, alternating servers within every
# repetition, and writes the medians into bench/RESULTS.md (between the
# run-health markers, run-health-open-loop for --rate; the rest of the file
# is kept).
#
# The figure that matters is calls per server-CPU-second (server efficiency),
# which is compared at the same offered load. The target is gateway/echo >=
# 0.90. Closed loop by default; --rate R offers R calls/s open loop instead
# (then --concurrency caps the calls in flight).
#
# Usage: bench/run-health.sh [--reps N] [--duration S] [--warmup S]
#                            [--concurrency N] [--rate R] [--build-dir DIR]
#                            [--echo-only] [--no-access-log-run]
#                            [--results FILE | --no-results]
# Environment: SERVER_CPU (default 0), CLIENT_CPU (default 1).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

reps=3
duration=8
warmup=2
concurrency=64
rate=
build_dir=build
echo_only=0
access_log_run=1
results=bench/RESULTS.md
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
command_line="bench/run-health.sh${*:+ $*}"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case $1 in
    --reps) reps=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --echo-only) echo_only=1; shift ;;
    --no-access-log-run) access_log_run=0; shift ;;
    --results) results=$2; shift 2 ;;
    --no-results) results=; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run-health.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

log() { printf '[run-health] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in openssl awk sort; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

# --- build -------------------------------------------------------------------
sgbench=$build_dir/tools/sgbench
sgctl=$build_dir/tools/sgctl
echo_server=$build_dir/bench/echo_server
gateway=$build_dir/server/sandgate

if [[ ! -f $build_dir/build.ninja ]]; then
    log "configuring $build_dir"
    meson setup "$build_dir" >/dev/null
fi
log "building the tools and the echo server"
ninja -C "$build_dir" tools/sgbench tools/sgctl bench/echo_server >/dev/null
if [[ $echo_only == 0 ]]; then
    if ! ninja -C "$build_dir" server/sandgate >/dev/null 2>&1; then
        log "the gateway does not build: measuring the echo baseline only"
        echo_only=1
    fi
fi

# --- pinning -----------------------------------------------------------------
pin_server=()
pin_client=()
if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
    pin_server=(taskset -c "$server_cpu")
    pin_client=(taskset -c "$client_cpu")
else
    log "warning: no taskset or fewer than 2 CPUs: server and client unpinned"
fi

# --- scratch space, certificates, cleanup -------------------------------------
tmp=$(mktemp -d -t sg-run-health.XXXXXX)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_certs() {
    local d=$1
    (
        cd "$d"
        openssl ecparam -name prime256v1 -genkey -noout -out ca.key
        openssl req -x509 -new -key ca.key -sha256 -days 2 \
            -subj "/CN=sandgate bench CA" -out ca.pem
        openssl ecparam -name prime256v1 -genkey -noout -out server.key
        openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
        printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
            'extendedKeyUsage=serverAuth' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key \
            -CAcreateserial -days 2 -sha256 -extfile server.ext -out server.pem
        openssl ecparam -name prime256v1 -genkey -noout -out client.key
        openssl req -new -key client.key -subj "/CN=bench-client" -out client.csr
        printf '%s\n' 'subjectAltName=URI:spiffe://sandgate.test/bench' \
            'extendedKeyUsage=clientAuth' >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key \
            -CAcreateserial -days 2 -sha256 -extfile client.ext -out client.pem
    ) >/dev/null 2>&1 || die "openssl failed to make the test certificates"
}
make_certs "$tmp"
mtls_flags=(--cacert "$tmp/ca.pem" --cert "$tmp/client.pem" --key "$tmp/client.key")

# --- ports -------------------------------------------------------------------
port_busy() {
    if command -v ss >/dev/null; then
        [[ -n $(ss -Htln "sport = :$1" 2>/dev/null) ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}
next_port=$((20000 + RANDOM % 20000))
port=
free_port() { # sets $port (no subshell, so that next_port advances)
    while port_busy "$next_port"; do
        next_port=$((next_port + 1))
    done
    port=$next_port
    next_port=$((next_port + 1))
}

# --- servers ------------------------------------------------------------------
# Every server stays up for the whole run (idle servers use no CPU), so the
# measurements can alternate between them.
declare -A srv_pid srv_plain srv_mtls

wait_ready() { # name pid addr
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$2" 2>/dev/null || return 1
        if "$sgctl" --addr "$3" --timeout 1 health >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

start_echo() {
    local plain mtls pid
    free_port
    plain=127.0.0.1:$port
    free_port
    mtls=127.0.0.1:$port
    "${pin_server[@]}" "$echo_server" --listen "$plain" --mtls-listen "$mtls" \
        --cert "$tmp/server.pem" --key "$tmp/server.key" \
        --cacert "$tmp/ca.pem" -t 1 >"$tmp/echo.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_ready echo "$pid" "$plain" || {
        cat "$tmp/echo.log" >&2
        die "the echo server did not start"
    }
    srv_pid[echo]=$pid srv_plain[echo]=$plain srv_mtls[echo]=$mtls
}

# start_gateway NAME ACCESS_LOG(true|false); returns 1 if it does not come up.
start_gateway() {
    local name=$1 access=$2 plain mtls pid conf
    free_port
    plain=127.0.0.1:$port
    free_port
    mtls=127.0.0.1:$port
    conf=$tmp/$name.yaml
    mkdir -p "$tmp/$name-data"
    cat >"$conf" <<EOF
listeners:
  - address: "$plain"
  - address: "$mtls"
    tls:
      cert_file: "$tmp/server.pem"
      key_file: "$tmp/server.key"
      client_ca_file: "$tmp/ca.pem"
server:
  workers: 1
log:
  access_log: $access
EOF
    "${pin_server[@]}" "$gateway" --config "$conf" --data-dir "$tmp/$name-data" \
        >"$tmp/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    if ! wait_ready "$name" "$pid" "$plain"; then
        log "the gateway ($name) did not come up; its log:"
        tail -n 20 "$tmp/$name.log" >&2 || true
        return 1
    fi
    srv_pid[$name]=$pid srv_plain[$name]=$plain srv_mtls[$name]=$mtls
}

start_echo
servers=(echo)
gateway_version=
if [[ $echo_only == 0 ]]; then
    if start_gateway gateway false; then
        servers+=(gateway)
        gateway_version=$("$sgctl" --addr "${srv_plain[gateway]}" version 2>/dev/null |
            awk '/^server:/ {sub(/^server: */, ""); print}') || true
        if [[ $access_log_run == 1 ]] && start_gateway gateway-log true; then
            servers+=(gateway-log)
        fi
    else
        echo_only=1
    fi
fi

# --- measurements --------------------------------------------------------------
modes=(plaintext mtls)
mkdir -p "$tmp/runs"

# Busy ticks of one CPU (/proc/stat) and CPU ticks of one process; both in
# USER_HZ. Their difference over a run is what else ran on the server's CPU.
cpu_busy() { awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
proc_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
now_s() { date +%s.%N; }

run_one() { # server mode rep
    local server=$1 mode=$2 rep=$3 addr out flags=() pid
    local t0 t1 busy0 busy1 proc0 proc1
    [[ -z $rate ]] || flags+=(--rate "$rate")
    if [[ $mode == mtls ]]; then
        addr=${srv_mtls[$server]}
        flags+=("${mtls_flags[@]}")
    else
        addr=${srv_plain[$server]}
    fi
    pid=${srv_pid[$server]}
    out=$tmp/runs/$server-$mode-$rep.json
    log "rep $rep/$reps: $server $mode ($addr)"
    t0=$(now_s) busy0=$(cpu_busy "$server_cpu") proc0=$(proc_ticks "$pid")
    "${pin_client[@]}" "$sgbench" --addr "$addr" "${flags[@]}" \
        --concurrency "$concurrency" --connections 1 --threads 1 \
        --duration "$duration" --warmup "$warmup" \
        --server-pid "$pid" --json >"$out" || {
        local rc=$?
        [[ $rc == 1 ]] || die "sgbench failed (exit $rc) against $server $mode"
        log "warning: some calls failed against $server $mode"
    }
    t1=$(now_s) busy1=$(cpu_busy "$server_cpu") proc1=$(proc_ticks "$pid")
    # Percent of the server's CPU used by other processes during the run.
    awk -v b="$((busy1 - busy0))" -v p="$((proc1 - proc0))" -v t0="$t0" -v t1="$t1" \
        'BEGIN { v = (b - p) / ((t1 - t0) * 100) * 100; printf "%.1f\n", v < 0 ? 0 : v }' \
        >"$tmp/runs/$server-$mode-$rep.other"
}

for ((rep = 1; rep <= reps; rep++)); do
    for mode in "${modes[@]}"; do
        for server in "${servers[@]}"; do
            run_one "$server" "$mode" "$rep"
        done
    done
done

# --- summary ------------------------------------------------------------------
jget() { # file key: the value of "key" in sgbench's one-key-per-line JSON
    awk -v k="\"$2\":" '$1 == k { v = $2; sub(/,$/, "", v); print v; exit }' "$1"
}
median() {
    printf '%s\n' "$@" | awk '$1 != "null" && $1 != ""' | sort -g |
        awk '{ a[NR] = $1 }
             END { if (NR == 0) { print "nan"; exit }
                   if (NR % 2) print a[(NR + 1) / 2];
                   else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
values() { # server mode key: the value from every repetition
    local r
    for ((r = 1; r <= reps; r++)); do
        jget "$tmp/runs/$1-$2-$r.json" "$3"
    done
}
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "nan") print "n/a"; else printf f, v }'; }

declare -A med
keys=(calls_per_s latency_p50_us latency_p99_us server_cpu_us_per_call
    calls_per_server_cpu_s errors client_cpu_us_per_call)
for server in "${servers[@]}"; do
    for mode in "${modes[@]}"; do
        for key in "${keys[@]}"; do
            # shellcheck disable=SC2046 # one value per repetition
            med[$server,$mode,$key]=$(median $(values "$server" "$mode" "$key"))
        done
    done
done

# Gateway/echo ratio of calls per server-CPU-second, paired by repetition
# (the two runs were minutes apart at most, so slow drifts of the machine
# cancel out). Prints "median (per-repetition ratios)".
ratio() { # mode server
    local r a b list=()
    for ((r = 1; r <= reps; r++)); do
        a=$(jget "$tmp/runs/$2-$1-$r.json" calls_per_server_cpu_s)
        b=$(jget "$tmp/runs/echo-$1-$r.json" calls_per_server_cpu_s)
        list+=("$(awk -v a="$a" -v b="$b" 'BEGIN {
            if (a == "null" || b == "null" || b == 0) print "null";
            else printf "%.2f\n", a / b }')")
    done
    printf '%s (%s)\n' "$(fmt "$(median "${list[@]}")" '%.2f')" \
        "$(printf '%s / ' "${list[@]}" | sed 's| / $||')"
}

label() {
    case $1 in
    echo) echo "echo baseline" ;;
    gateway) echo "gateway" ;;
    gateway-log) echo "gateway, access log on" ;;
    esac
}

table=$tmp/table.md
{
    echo "| server | transport | calls/s | p50 µs | p99 µs | server CPU-µs/call | calls per server-CPU-s | errors | per run: calls/s; calls per server-CPU-s; other load on the server CPU |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---|"
    for mode in "${modes[@]}"; do
        for server in "${servers[@]}"; do
            # shellcheck disable=SC2046
            runs=$(printf '%s / ' $(values "$server" "$mode" calls_per_s |
                awk '{ printf "%.0f\n", $1 }'))
            # shellcheck disable=SC2046
            effs=$(printf '%s / ' $(values "$server" "$mode" calls_per_server_cpu_s |
                awk '{ printf "%.0f\n", $1 }'))
            others=$(for ((r = 1; r <= reps; r++)); do
                printf '%s%% / ' "$(cat "$tmp/runs/$server-$mode-$r.other")"
            done)
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
                "$(label "$server")" "$mode" \
                "$(fmt "${med[$server,$mode,calls_per_s]}" '%.0f')" \
                "$(fmt "${med[$server,$mode,latency_p50_us]}" '%.0f')" \
                "$(fmt "${med[$server,$mode,latency_p99_us]}" '%.0f')" \
                "$(fmt "${med[$server,$mode,server_cpu_us_per_call]}" '%.1f')" \
                "$(fmt "${med[$server,$mode,calls_per_server_cpu_s]}" '%.0f')" \
                "$(fmt "${med[$server,$mode,errors]}" '%.0f')" \
                "${runs% / }; ${effs% / }; ${others% / }"
        done
    done
    echo
    if [[ $echo_only == 0 ]]; then
        echo "| transport | gateway / echo, calls per server-CPU-s (target >= 0.90): median of the per-repetition ratios | with access log on |"
        echo "|---|---:|---:|"
        for mode in "${modes[@]}"; do
            log_ratio="not run"
            if [[ " ${servers[*]} " == *" gateway-log "* ]]; then
                log_ratio=$(ratio "$mode" gateway-log)
            fi
            printf '| %s | %s | %s |\n' "$mode" "$(ratio "$mode" gateway)" "$log_ratio"
        done
    else
        echo "Gateway: not measured in this run (not built, did not start, or --echo-only)."
    fi
} >"$table"

cat "$table"

[[ -n $results ]] || exit 0

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD 2>/dev/null; then
    commit="$commit (with uncommitted changes)"
fi
cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
grpc_core=$(jget "$tmp/runs/echo-plaintext-1.json" grpc_core | tr -d '"')
pinning="server on CPU $server_cpu, sgbench on CPU $client_cpu"
[[ ${#pin_server[@]} -gt 0 ]] || pinning="unpinned"

# One section per load model, so that a --rate run does not replace the
# closed-loop one.
marker=run-health${rate:+-open-loop}
section=$tmp/section.md
{
    echo "<!-- $marker:begin (generated by bench/run-health.sh; edits here are replaced) -->"
    echo "## Unary Health/Check: gateway against the echo baseline${rate:+, fixed offered rate}"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- commit: $commit"
    echo "- command: \`$command_line\`"
    echo "- machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}, kernel $(uname -r), gRPC core $grpc_core"
    echo "- gateway: ${gateway_version:-not run} (server.workers: 1); echo server: 1 CQ thread"
    if [[ -z $rate ]]; then
        load="closed loop, $concurrency outstanding calls"
    else
        load="open loop, $rate calls/s offered, at most $concurrency in flight"
    fi
    echo "- load: sgbench $load on 1 connection, 1 thread;" \
        "$reps repetitions of ${duration} s after ${warmup} s warm-up, servers alternating" \
        "within each repetition; $pinning; medians shown"
    echo "- request: empty HealthCheckRequest; mTLS: EC P-256 certificates, client certificate required"
    echo
    cat "$table"
    echo
    echo "Server CPU is utime+stime of the server process over the measured window"
    echo "(/proc/PID/stat, 10 ms ticks). Calls per server-CPU-second is the efficiency"
    echo "figure; it still depends somewhat on the load level (a busier server does more"
    echo "work per wake-up), which is why the servers are compared under the same client."
    echo "Calls/s and latency mostly show the client, which needs about as much CPU per"
    echo "call as a trivial server. \"Other load\" is the share of the server's CPU that"
    echo "other processes used during each run (/proc/stat): runs with high other load"
    echo "are the noisy ones."
    echo "<!-- $marker:end -->"
} >"$section"

if [[ -f $results ]] && grep -q "^<!-- $marker:begin" "$results"; then
    awk -v sect="$section" -v b="<!-- $marker:begin" -v e="<!-- $marker:end" '
        index($0, b) == 1 { while ((getline l < sect) > 0) print l; skip = 1; next }
        index($0, e) == 1 { skip = 0; next }
        !skip { print }' "$results" >"$tmp/results.new"
    cat "$tmp/results.new" >"$results"
else
    if [[ ! -f $results ]]; then
        printf '# Benchmark results\n\nHow to reproduce: see bench/README.md.\n\n' >"$results"
    else
        echo >>"$results"
    fi
    cat "$section" >>"$results"
fi
log "wrote $results"
