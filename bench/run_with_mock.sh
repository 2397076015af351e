#!/usr/bin/env bash
# Runs wsrelay in the foreground for `make run`. With OPENAI_API_KEY set it
# relays to OpenAI (conf/wsrelay.cfg); otherwise it starts the bundled mock
# upstream on 127.0.0.1:18080 and relays to it (conf/wsrelay-mock.cfg).
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
mock_pid=""

cleanup() {
    if [ -n "$mock_pid" ]; then
        kill "$mock_pid" 2>/dev/null || true
        wait "$mock_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${OPENAI_API_KEY:-}" ]; then
    config=conf/wsrelay.cfg
    echo "OPENAI_API_KEY is set: relaying to OpenAI with $config"
else
    config=conf/wsrelay-mock.cfg
    echo "OPENAI_API_KEY is not set: starting the mock upstream on 127.0.0.1:18080 and using $config"
    echo "The mock's log goes to $build_dir/mock_upstream.log."
    "$build_dir/bench/mock_upstream" --listen 127.0.0.1:18080 2>"$build_dir/mock_upstream.log" &
    mock_pid=$!
fi
echo "Point Codex at http://127.0.0.1:8080/v1 with the demo key 'wsrelay-demo-key' (see README.md)."
echo "Press Ctrl-C to stop."
"$build_dir/wsrelay" -c "$config" &
relay_pid=$!
trap 'kill -TERM $relay_pid 2>/dev/null || true' INT TERM
status=0
wait "$relay_pid" || status=$?
# A Ctrl-C interrupts the first wait; wait again for the relay's own shutdown.
if kill -0 "$relay_pid" 2>/dev/null; then
    wait "$relay_pid" || status=$?
fi
exit "$status"
