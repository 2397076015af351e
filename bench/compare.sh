#!/usr/bin/env bash
# Runs the same WebSocket workloads against mock_upstream directly, wsrelay, nginx
# and HAProxy, one target at a time on 127.0.0.1. The tls workload puts a TLS terminator
# (HAProxy in TCP mode) in front of mock_upstream. It prints a table and writes
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

The tls workload runs the streaming and large-event turns with every proxy
dialing its upstream over TLS, through an HAProxy TLS terminator in front of
mock_upstream. It needs haproxy and openssl, and skips direct because loadgen
has no TLS client.

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
    tls_args="--connections 100 --turns 5 --deltas 200 --delta-bytes 200 --request-bytes 30000 --duration 10"
    tls_large_args="--connections 4 --turns 4 --large-bytes 8388608 --deltas 10 --delta-bytes 200 --request-bytes 30000 --duration 10"
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
    # The same turns as stream_100 and large, so that the cost of TLS is the difference.
    tls_args="$stream_100_args"
    tls_large_args="$large_args"
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
    tls) echo "$tls_args" ;;
    tls_large) echo "$tls_large_args" ;;
    esac
}

# ---- Targets ----

mock_pid=""
mock_port=""
target_pid=""
target_port=""
# What the proxies dial: mock_upstream itself, or the TLS terminator in front of it.
upstream_port=""
upstream_tls=false
tls_dir=$run_dir/tls
terminator_pid=""

start_mock() {
    local log=$run_dir/mock_upstream.log
    mock_port=$(free_port)
    echo "mock_upstream --listen 127.0.0.1:$mock_port --threads $mock_threads --quiet &" >>"$commands_file"
    "$mock" --listen "127.0.0.1:$mock_port" --threads "$mock_threads" --quiet >>"$log" 2>&1 &
    mock_pid=$!
    started_pids+=("$mock_pid")
    upstream_port=$mock_port
    upstream_tls=false
    wait_listen "$mock_port" "$mock_pid" "$log"
}

# Creates a throwaway CA and a leaf certificate for IP 127.0.0.1 and DNS localhost
# (ECDSA P-256, valid for 2 days) in $tls_dir.
make_certificates() {
    local log=$run_dir/openssl.log
    mkdir -p "$tls_dir"
    (
        cd "$tls_dir"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout ca.key -out ca.pem -days 2 -subj "/CN=wsrelay bench CA" \
            -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout leaf.key -out leaf.csr -subj "/CN=localhost"
        cat >leaf.ext <<'EOF'
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
EOF
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 2 -sha256 -extfile leaf.ext -out leaf.pem
        # HAProxy reads the certificate and its key from one file.
        cat leaf.pem leaf.key >leaf-with-key.pem
        chmod 600 ca.key leaf.key leaf-with-key.pem
    ) >>"$log" 2>&1 || {
        echo "compare.sh: openssl failed to create the bench certificates; its output:" >&2
        tail -n 20 "$log" >&2
        return 1
    }
}

write_terminator_config() {
    local file=$1
    cat >"$file" <<EOF
# Generated by bench/compare.sh: the TLS terminator in front of mock_upstream, shared
# by every target of the tls workload. It is not a measured target.
global
    nbthread $nproc_count
    maxconn 9900
    log stdout format raw local0

defaults
    mode tcp
    log global
    # One line per connection once it reaches mock_upstream: the negotiated protocol
    # and cipher suite, and whether the session was resumed.
    option logasap
    log-format "tls %sslv %sslc resumed=%[ssl_fc_is_resumed]"
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend tls
    # prefer-client-ciphers lets each proxy get the TLS 1.3 suite it offers first.
    bind 127.0.0.1:$upstream_port ssl crt $tls_dir/leaf-with-key.pem prefer-client-ciphers
    default_backend mock

backend mock
    server mock 127.0.0.1:$mock_port
EOF
}

# Starts the TLS terminator in front of the running mock_upstream and points
# upstream_port at it.
start_terminator() {
    local log=$run_dir/terminator.log cfg=$run_dir/terminator.cfg
    upstream_port=$(free_port)
    write_terminator_config "$cfg"
    echo "haproxy -f terminator.cfg -db &" >>"$commands_file"
    haproxy -f "$cfg" -db >>"$log" 2>&1 &
    terminator_pid=$!
    started_pids+=("$terminator_pid")
    if ! wait_listen "$upstream_port" "$terminator_pid" "$log"; then
        return 1
    fi
    upstream_tls=true
}

stop_terminator() {
    if [ -n "$terminator_pid" ]; then
        stop_pid "$terminator_pid"
        forget_pid "$terminator_pid"
        terminator_pid=""
    fi
}

# Prints the user plus system CPU time of a process (all its threads) in clock ticks.
cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return 0; }
    # utime and stime are the 12th and 13th fields after the parenthesized command name.
    echo "${stat##*) }" | awk '{ print $12 + $13 }'
}

write_wsrelay_config() {
    local file=$1 scheme=ws ca_line=""
    if $upstream_tls; then
        scheme=wss
        ca_line=$'\n    '"upstream_ca_file = \"$tls_dir/ca.pem\";"
    fi
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
    upstream_url = "$scheme://127.0.0.1:$upstream_port/v1/responses";$ca_line
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
    local file=$1 prefix=$run_dir/nginx scheme=http tls_lines=""
    mkdir -p "$prefix"
    if $upstream_tls; then
        scheme=https
        # nginx checks the certificate against proxy_ssl_name (the leaf also names
        # localhost). Before 1.23.4, nginx offers TLS 1.3 only when listed here.
        tls_lines="
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $tls_dir/ca.pem;
            proxy_ssl_name localhost;
            proxy_ssl_protocols TLSv1.2 TLSv1.3;
            proxy_ssl_session_reuse on;"
    fi
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
            proxy_pass $scheme://127.0.0.1:$upstream_port;$tls_lines
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
    local file=$1 tls_options=""
    if $upstream_tls; then
        # verifyhost makes HAProxy check the certificate's name, as wsrelay and nginx do.
        tls_options=" ssl verify required ca-file $tls_dir/ca.pem verifyhost localhost"
    fi
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
    server mock 127.0.0.1:$upstream_port$tls_options
EOF
}

# Starts a target and sets target_port and target_pid (empty for direct).
start_target() {
    local name=$1 log=$run_dir/$1.log cfg suffix=""
    target_pid=""
    if [ "$name" = direct ]; then
        target_port=$mock_port
        return 0
    fi

    target_port=$(free_port)
    # The tls workload writes its configurations under other names, so that the report
    # can show both kinds.
    if $upstream_tls; then
        suffix=-tls
    fi
    case $name in
    wsrelay)
        cfg=$run_dir/wsrelay$suffix.cfg
        write_wsrelay_config "$cfg"
        echo "wsrelay -c wsrelay$suffix.cfg &" >>"$commands_file"
        "$wsrelay" -c "$cfg" >>"$log" 2>&1 &
        ;;
    nginx)
        cfg=$run_dir/nginx$suffix.conf
        write_nginx_config "$cfg"
        echo "nginx -c nginx$suffix.conf -p nginx/ -e nginx/error.log &" >>"$commands_file"
        nginx -c "$cfg" -p "$run_dir/nginx" -e "$run_dir/nginx/error.log" >>"$log" 2>&1 &
        ;;
    haproxy)
        cfg=$run_dir/haproxy$suffix.cfg
        write_haproxy_config "$cfg"
        echo "haproxy -f haproxy$suffix.cfg -db &" >>"$commands_file"
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

# Runs loadgen for one workload against the running target and writes
# $run_dir/results/WORKLOAD.TARGET.json.
measure() {
    local workload=$1 target=$2 args limit out err
    args=$(workload_args "$workload")
    out=$run_dir/results/$workload.$target.json
    err=$run_dir/results/$workload.$target.log

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
}

stop_target() {
    if [ -n "$target_pid" ]; then
        stop_pid "$target_pid"
        forget_pid "$target_pid"
    fi
}

stop_mock() {
    stop_pid "$mock_pid"
    forget_pid "$mock_pid"
}

run_one() {
    local workload=$1 target=$2

    start_mock
    if ! start_target "$target"; then
        echo "compare.sh: $target did not start; $workload on $target is skipped" >&2
        echo "$workload $target: did not start" >>"$notes_file"
        stop_mock
        return 0
    fi
    measure "$workload" "$target"
    stop_target
    stop_mock
}

# Runs one part of the tls workload (tls or tls_large) against a target, behind the
# shared terminator. Next to the loadgen report it writes WORKLOAD.TARGET.terminator:
# the terminator's CPU time over the whole loadgen run (not only its measured window)
# and the TLS handshakes it logged in that time.
measure_tls() {
    local workload=$1 target=$2 log=$run_dir/terminator.log lines_before ticks_before ticks_after
    lines_before=$(wc -l <"$log")
    ticks_before=$(cpu_ticks "$terminator_pid")
    measure "$workload" "$target"
    ticks_after=$(cpu_ticks "$terminator_pid")
    tail -n +$((lines_before + 1)) "$log" | grep '^tls ' | sort | uniq -c |
        awk -v ticks=$((ticks_after - ticks_before)) -v hz="$(getconf CLK_TCK)" '
            BEGIN { printf "{\"cpu_s\":%.2f,\"handshakes\":[", ticks / hz }
            {
                split($5, resumed, "=")
                printf "%s{\"count\":%d,\"protocol\":\"%s\",\"suite\":\"%s\",\"resumed\":%s}",
                       (NR > 1 ? "," : ""), $1, $3, $4, (resumed[2] == "1" ? "true" : "false")
            }
            END { print "]}" }' >"$run_dir/results/$workload.$target.terminator"
}

# Runs the tls workload: one mock_upstream and one TLS terminator in front of it for
# every target, and each target started fresh for each part.
run_tls() {
    local target part
    if ! command -v openssl >/dev/null || ! command -v haproxy >/dev/null; then
        echo "  tls          skipped: it needs openssl and haproxy (for the TLS terminator)"
        echo "tls: skipped, openssl or haproxy is not installed" >>"$notes_file"
        return 0
    fi
    if [ ! -s "$tls_dir/leaf-with-key.pem" ] && ! make_certificates; then
        echo "tls: skipped, openssl failed to create the certificates" >>"$notes_file"
        return 0
    fi
    echo "# The tls workload: one mock_upstream and one TLS terminator for every target:" \
        >>"$commands_file"
    start_mock
    if ! start_terminator; then
        echo "tls: skipped, the TLS terminator did not start" >>"$notes_file"
        stop_terminator
        stop_mock
        return 0
    fi

    for target in $targets; do
        if [ "$target" = direct ]; then
            echo "  tls          direct   skipped: loadgen has no TLS client"
            echo "tls direct: skipped, because loadgen has no TLS client to reach the terminator" \
                >>"$notes_file"
            continue
        fi
        if ! target_available "$target"; then
            echo "  tls $target: skipped, $target is not installed or not built"
            echo "tls $target: skipped, not installed or not built" >>"$notes_file"
            continue
        fi
        for part in tls tls_large; do
            if ! start_target "$target"; then
                echo "compare.sh: $target did not start; $part on $target is skipped" >&2
                echo "$part $target: did not start" >>"$notes_file"
                continue
            fi
            measure_tls "$part" "$target"
            stop_target
        done
    done

    stop_terminator
    stop_mock
    upstream_tls=false
}

started_at=$(date +%s)
if [ "$mode" = quick ]; then
    echo "bench-quick: counts and durations are scaled down (for example $idle_connections idle connections for 2 s in place of 9000 for 65 s, and a ${ping_interval} s Ping interval); the numbers are a smoke test, not results."
else
    echo "bench: full run; this takes about 11 minutes."
fi
echo "Results directory for this run: $run_dir"

for workload in $workloads; do
    if [ "$workload" = tls ]; then
        run_tls
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
    stop_target
    stop_mock

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
