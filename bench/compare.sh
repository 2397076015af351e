#!/usr/bin/env bash
# Runs the same WebSocket workloads against mock_upstream directly, wsrelay, nginx
# and HAProxy, one target at a time on 127.0.0.1. It prints a table and writes
# bench/results/latest.json. A full run also writes bench/RESULTS.md with a PNG
# plot per workload. Every process it starts is stopped on exit.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/compare.sh [--quick] [--build-dir DIR] [--targets LIST] [--workloads LIST]
                        [--keep-temp]

Compares the CPU time, memory and latency of relaying Responses API WebSocket
traffic through wsrelay, nginx and HAProxy, with mock_upstream as the upstream.
Everything runs on 127.0.0.1 and every run is bounded in count and time.

  --quick            scaled-down counts and durations (under a minute); writes
                     bench/results/latest.json but not bench/RESULTS.md
  --build-dir DIR    CMake build directory with wsrelay, bench/loadgen and
                     bench/mock_upstream (default: build)
  --targets LIST     space-separated subset of: direct wsrelay nginx haproxy
  --workloads LIST   space-separated subset of:
                     stream_100 stream_1000 large idle churn tls
  --keep-temp        keep the directory with configurations and logs
  -h, --help         print this help and exit

Environment: BENCH_MOCK_THREADS sets mock_upstream's worker threads (default 1).
EOF
}

repo=$(cd "$(dirname "$0")/.." && pwd)
invocation="bench/compare.sh $*"
mode=full
build_dir=build
targets="direct wsrelay nginx haproxy"
workloads="stream_100 stream_1000 large idle churn tls"
keep_temp=false
mock_threads=${BENCH_MOCK_THREADS:-1}

while [ $# -gt 0 ]; do
    case $1 in
    --quick) mode=quick ;;
    --build-dir) build_dir=${2:?--build-dir needs a directory}; shift ;;
    --targets) targets=${2:?--targets needs a list}; shift ;;
    --workloads) workloads=${2:?--workloads needs a list}; shift ;;
    --keep-temp) keep_temp=true ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

case $build_dir in
/*) ;;
*) build_dir=$repo/$build_dir ;;
esac
loadgen=$build_dir/bench/loadgen
mock=$build_dir/bench/mock_upstream
wsrelay=$build_dir/wsrelay

for t in $targets; do
    case $t in
    direct | wsrelay | nginx | haproxy) ;;
    *) echo "compare.sh: unknown target '$t': use direct, wsrelay, nginx or haproxy" >&2; exit 2 ;;
    esac
done
for w in $workloads; do
    case $w in
    stream_100 | stream_1000 | large | idle | churn | tls) ;;
    *) echo "compare.sh: unknown workload '$w'" >&2; exit 2 ;;
    esac
done
for f in "$loadgen" "$mock"; do
    if [ ! -x "$f" ]; then
        echo "compare.sh: $f not found: build first (make build, or cmake --build $build_dir)" >&2
        exit 1
    fi
done
for tool in node ss timeout; do
    command -v "$tool" >/dev/null || { echo "compare.sh: $tool is required" >&2; exit 1; }
done

run_dir=$(mktemp -d /tmp/wsrelay-bench.XXXXXX)
# nginx workers drop root privileges and must be able to read their configuration.
chmod 755 "$run_dir"
mkdir -p "$run_dir/results"
started_pids=()
commands_file=$run_dir/commands.txt
notes_file=$run_dir/notes.txt
: >"$commands_file"
: >"$notes_file"

stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${started_pids[@]}"; do
        stop_pid "$pid"
    done
    started_pids=()
    if $keep_temp; then
        echo "compare.sh: configurations and logs kept in $run_dir"
    else
        rm -rf "$run_dir"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
    local pid=$1 kept=() p
    for p in "${started_pids[@]}"; do
        [ "$p" = "$pid" ] || kept+=("$p")
    done
    started_pids=("${kept[@]+"${kept[@]}"}")
}

# Prints a loopback TCP port that nothing uses, below the ephemeral range (32768 and up)
# so that outgoing connections never hold it.
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 12000))
        if [ -z "$(ss -Htan "sport = :$port")" ]; then
            echo "$port"
            return 0
        fi
    done
    echo "compare.sh: no free port found between 20000 and 31999" >&2
    return 1
}

# Waits up to 10 s for a listener on 127.0.0.1:port, while process pid is alive.
wait_listen() {
    local port=$1 pid=$2 log=$3
    for _ in $(seq 1 200); do
        if [ -n "$(ss -Htln "sport = :$port")" ]; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "compare.sh: process $pid exited before listening on port $port; its log:" >&2
            tail -n 20 "$log" >&2 || true
            return 1
        fi
        sleep 0.05
    done
    echo "compare.sh: nothing listens on 127.0.0.1:$port after 10 s; see $log" >&2
    return 1
}

# ---- Workloads ----
#
# Each workload is a set of loadgen options, and quick mode scales counts and times down.
# The client key is a fixed bench key that only the generated wsrelay
# configuration accepts.

bench_key="wsrelay-bench-key"
bench_key_sha256=$(printf %s "$bench_key" | sha256sum | cut -d' ' -f1)
nproc_count=$(nproc)

if [ "$mode" = quick ]; then
    stream_100_args="--connections 100 --turns 20 --deltas 200 --delta-bytes 200 --request-bytes 30000 --duration 10"
    stream_1000_args="--connections 1000 --turns 2 --ramp-rate 4000 --deltas 200 --delta-bytes 200 --request-bytes 30000 --duration 10"
    large_args="--connections 6 --turns 12 --large-bytes 8388608 --deltas 10 --delta-bytes 200 --request-bytes 30000 --duration 10"
    idle_connections=500
    idle_args="--connections $idle_connections --idle 2 --ramp-rate 5000 --deltas 10 --delta-bytes 200 --request-bytes 30000 --duration 10"
    churn_args="--churn --connections 20 --max-turns 6000 --deltas 10 --delta-bytes 200 --request-bytes 2000 --duration 10"
    # The default Ping interval (20 s) is longer than the quick idle time, so quick
    # mode shortens it so that Pings would flow.
    ping_interval=0.5
    ping_timeout=0.25
else
    stream_100_args="--connections 100 --turns 400 --deltas 200 --delta-bytes 200 --request-bytes 30000 --duration 90"
    stream_1000_args="--connections 1000 --turns 40 --ramp-rate 2000 --deltas 200 --delta-bytes 200 --request-bytes 30000 --duration 90"
    large_args="--connections 10 --turns 100 --large-bytes 8388608 --deltas 10 --delta-bytes 200 --request-bytes 30000 --duration 90"
    idle_connections=9000
    # 65 s idle is more than twice the default Ping interval plus its timeout (2 x (20 + 5) s).
    idle_args="--connections $idle_connections --idle 65 --ramp-rate 1500 --deltas 10 --delta-bytes 200 --request-bytes 30000 --duration 120"
    churn_args="--churn --connections 50 --max-turns 60000 --deltas 10 --delta-bytes 200 --request-bytes 2000 --duration 90"
    ping_interval=20
    ping_timeout=5
fi

workload_args() {
    case $1 in
    stream_100) echo "$stream_100_args" ;;
    stream_1000) echo "$stream_1000_args" ;;
    large) echo "$large_args" ;;
    idle) echo "$idle_args" ;;
    churn) echo "$churn_args" ;;
    esac
}

# ---- Targets ----

mock_pid=""
mock_port=""
target_pid=""
target_port=""

start_mock() {
    local log=$run_dir/mock_upstream.log
    mock_port=$(free_port)
    echo "mock_upstream --listen 127.0.0.1:$mock_port --threads $mock_threads --quiet &" >>"$commands_file"
    "$mock" --listen "127.0.0.1:$mock_port" --threads "$mock_threads" --quiet >>"$log" 2>&1 &
    mock_pid=$!
    started_pids+=("$mock_pid")
    wait_listen "$mock_port" "$mock_pid" "$log"
}

write_wsrelay_config() {
    local file=$1
    cat >"$file" <<EOF
# Generated by bench/compare.sh: defaults except the addresses, the log level and the
# ledger path.
gateway: {
  listen = "127.0.0.1:$target_port";
  workers = 0;
  max_connections = 10000;
  log_level = "warn";
  auth: {
    clients = ( { name = "bench"; key_sha256 = "$bench_key_sha256"; } );
  };
  openai_ws: {
    upstream_url = "ws://127.0.0.1:$mock_port/v1/responses";
    upstream_api_key_env = "";
    passthrough_downstream_ping_interval_seconds = $ping_interval;
    passthrough_downstream_ping_timeout_seconds = $ping_timeout;
  };
  usage: {
    ledger_path = "$run_dir/usage.jsonl";
  };
};
EOF
}

write_nginx_config() {
    local file=$1 prefix=$run_dir/nginx
    mkdir -p "$prefix"
    cat >"$file" <<EOF
# Generated by bench/compare.sh: a WebSocket reverse proxy as nginx documents it
# (nginx.org/en/docs/http/websocket.html), one worker per core.
worker_processes $nproc_count;
# Each relayed connection uses two descriptors, one to the client and one upstream.
worker_rlimit_nofile 20000;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
daemon off;

events {
    worker_connections 19000;
}

http {
    access_log off;
    client_body_temp_path $prefix/client_body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;

    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        '' close;
    }

    server {
        listen 127.0.0.1:$target_port backlog=4096;

        location / {
            proxy_pass http://127.0.0.1:$mock_port;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            # Upgraded connections use one buffer of proxy_buffer_size per direction
            # (ngx_http_upstream_process_upgraded). nginx rejects that size unless
            # proxy_buffers is large enough too.
            proxy_buffer_size 16k;
            proxy_buffers 4 16k;
            # The default of 60 s would close connections in the idle workload.
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }
    }
}
EOF
}

write_haproxy_config() {
    local file=$1
    cat >"$file" <<EOF
# Generated by bench/compare.sh: HTTP mode, one thread per core, WebSocket tunnels
# kept for up to an hour.
global
    nbthread $nproc_count
    # Two descriptors per connection must fit the open-file limit of 20000.
    maxconn 9900

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    timeout client-fin 5s

frontend bench
    bind 127.0.0.1:$target_port
    default_backend mock

backend mock
    server mock 127.0.0.1:$mock_port
EOF
}

# Starts a target and sets target_port and target_pid (empty for direct).
start_target() {
    local name=$1 log=$run_dir/$1.log cfg
    target_pid=""
    if [ "$name" = direct ]; then
        target_port=$mock_port
        return 0
    fi

    target_port=$(free_port)
    case $name in
    wsrelay)
        cfg=$run_dir/wsrelay.cfg
        write_wsrelay_config "$cfg"
        echo "wsrelay -c wsrelay.cfg &" >>"$commands_file"
        "$wsrelay" -c "$cfg" >>"$log" 2>&1 &
        ;;
    nginx)
        cfg=$run_dir/nginx.conf
        write_nginx_config "$cfg"
        echo "nginx -c nginx.conf -p nginx/ -e nginx/error.log &" >>"$commands_file"
        nginx -c "$cfg" -p "$run_dir/nginx" -e "$run_dir/nginx/error.log" >>"$log" 2>&1 &
        ;;
    haproxy)
        cfg=$run_dir/haproxy.cfg
        write_haproxy_config "$cfg"
        echo "haproxy -f haproxy.cfg -db &" >>"$commands_file"
        haproxy -f "$cfg" -db >>"$log" 2>&1 &
        ;;
    esac
    target_pid=$!
    started_pids+=("$target_pid")

    wait_listen "$target_port" "$target_pid" "$log"
}

target_available() {
    case $1 in
    direct) return 0 ;;
    wsrelay) [ -x "$wsrelay" ] ;;
    nginx) command -v nginx >/dev/null ;;
    haproxy) command -v haproxy >/dev/null ;;
    esac
}

# ---- Runs ----


run_one() {
    local workload=$1 target=$2 args limit out err
    args=$(workload_args "$workload")
    out=$run_dir/results/$workload.$target.json
    err=$run_dir/results/$workload.$target.log

    start_mock
    if ! start_target "$target"; then
        echo "compare.sh: $target did not start; $workload on $target is skipped" >&2
        echo "$workload $target: did not start" >>"$notes_file"
        stop_pid "$mock_pid"
        forget_pid "$mock_pid"
        return 0
    fi

    # shellcheck disable=SC2086 # args is a list of options
    set -- --target "127.0.0.1:$target_port" --key "$bench_key" --label "$workload/$target" $args
    set -- "$@" --upstream-pid "$mock_pid"
    if [ -n "$target_pid" ]; then
        set -- "$@" --proxy-pid "$target_pid"
    fi
    echo "loadgen ${*//$bench_key/\$BENCH_KEY}" >>"$commands_file"
    printf '  %-12s %-8s ' "$workload" "$target"
    # loadgen stops itself at --duration; timeout only guards against a hang.
    limit=$(echo "$args" | sed -n 's/.*--duration \([0-9]*\).*/\1/p')
    if timeout --kill-after=5 $((limit + 30)) "$loadgen" "$@" >"$out" 2>"$err"; then
        # shellcheck disable=SC2016 # the single quotes keep the JavaScript intact
        node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1]));
                 console.log(`done in ${r.window_s.toFixed(1)} s window, ${r.errors} errors`);' "$out"
    else
        echo "loadgen failed (status $?); see below"
        tail -n 5 "$err" >&2
        echo "$workload $target: loadgen failed" >>"$notes_file"
        rm -f "$out"
    fi

    if [ -n "$target_pid" ]; then
        stop_pid "$target_pid"
        forget_pid "$target_pid"
    fi
    stop_pid "$mock_pid"
    forget_pid "$mock_pid"
}

started_at=$(date +%s)
if [ "$mode" = quick ]; then
    echo "bench-quick: counts and durations are scaled down (for example $idle_connections idle connections for 2 s in place of 9000 for 65 s, and a ${ping_interval} s Ping interval); the numbers are a smoke test, not results."
else
    echo "bench: full run; this takes about 10 minutes."
fi
echo "Results directory for this run: $run_dir"

for workload in $workloads; do
    if [ "$workload" = tls ]; then
        echo "  tls          skipped: wsrelay has no TLS upstream yet"
        echo "tls: skipped because wsrelay has no TLS upstream yet" >>"$notes_file"
        continue
    fi
    for target in $targets; do
        if ! target_available "$target"; then
            echo "  $workload $target: skipped, $target is not installed or not built"
            echo "$workload $target: skipped, not installed or not built" >>"$notes_file"
            continue
        fi
        run_one "$workload" "$target"
    done
done

# Profiles wsrelay in a separate stream_1000 run, so that perf's own cost stays out of
# the table. Writes the top symbols by self time to $run_dir/profile.txt.
profile_wsrelay() {
    local perf_pid args limit
    if ! command -v perf >/dev/null || ! [ -x "$wsrelay" ]; then
        echo "profile: skipped, perf or wsrelay is missing" >>"$notes_file"
        return 0
    fi
    echo "  profiling wsrelay on stream_1000 with perf record -e cpu-clock"
    echo "# The profile run, which is not in the tables:" >>"$commands_file"

    start_mock
    if ! start_target wsrelay; then
        echo "profile: skipped, wsrelay did not start" >>"$notes_file"
        stop_pid "$mock_pid"
        forget_pid "$mock_pid"
        return 0
    fi

    echo "perf record -e cpu-clock -F 999 -o perf.data -p $target_pid &" >>"$commands_file"
    perf record -e cpu-clock -F 999 -o "$run_dir/perf.data" -p "$target_pid" \
        >>"$run_dir/perf.log" 2>&1 &
    perf_pid=$!
    started_pids+=("$perf_pid")
    args=$(workload_args stream_1000)
    echo "loadgen --target 127.0.0.1:$target_port --key \$BENCH_KEY --label profile $args" \
        >>"$commands_file"
    limit=$(echo "$args" | sed -n 's/.*--duration \([0-9]*\).*/\1/p')
    # shellcheck disable=SC2086 # args is a list of options
    timeout --kill-after=5 $((limit + 30)) "$loadgen" --target "127.0.0.1:$target_port" \
        --key "$bench_key" --label profile $args >/dev/null 2>>"$run_dir/perf.log" || true

    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    forget_pid "$perf_pid"
    stop_pid "$target_pid"
    forget_pid "$target_pid"
    stop_pid "$mock_pid"
    forget_pid "$mock_pid"

    perf report -i "$run_dir/perf.data" --stdio --no-children -F overhead,dso,sym \
        --percent-limit 1 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 30 \
        >"$run_dir/profile.txt" || true
}

if [ "$mode" = full ] && [[ " $targets " == *" wsrelay "* ]]; then
    profile_wsrelay
fi

report_args=(--mode "$mode" --results "$run_dir/results" --commands "$commands_file"
    --notes "$notes_file" --json "$repo/bench/results/latest.json"
    --elapsed "$(($(date +%s) - started_at))" --invocation "${invocation% }")
if [ "$mode" = full ]; then
    report_args+=(--markdown "$repo/bench/RESULTS.md" --plots "$repo/bench/results"
        --configs "$run_dir")
    if [ -s "$run_dir/profile.txt" ]; then
        report_args+=(--profile "$run_dir/profile.txt")
    fi
fi
node "$repo/bench/report.mjs" "${report_args[@]}"
