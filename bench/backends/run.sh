#!/usr/bin/env bash
# bench/backends: 10,000 HTTPS agent calls in flight through agentos's https
# backend against tools/mock_agent (each held 1 s), against bare libcurl
# multi programs making the same calls in the same run (what is measured and
# how: bench/backends/bench_backends.c). Makes certificates in a temporary
# directory, starts the mock agent, runs the benchmark, stops the mock.
# About 1.5 minutes a round at 10,000 calls; --quick makes 1,000.
#   bash bench/backends/run.sh BUILD_DIR [--quick] [--rounds R] [bench_backends options]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=$1
shift
dir=$(mktemp -d "${TMPDIR:-/tmp}/ao-bench-backends.XXXXXX")
mock_pid=
cleanup() {
  if [ -n "$mock_pid" ]; then
    kill "$mock_pid" 2>/dev/null || true
    wait "$mock_pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

bash "$here/tools/make-certs.sh" "$dir/certs"
# One descriptor per connection, in the mock and in both clients (each
# also raises its own soft limit; a low hard limit is raised here if we may).
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 65536 ]; then ulimit -Hn 65536 2>/dev/null || true; fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

"$build/tools/mock_agent" --cert "$dir/certs/server.pem" --key "$dir/certs/server.key" --https-port 0 \
  --port-file "$dir/ports.json" --quiet --latency-ms 1000 &
mock_pid=$!
for _ in $(seq 100); do
  [ -s "$dir/ports.json" ] && break
  kill -0 "$mock_pid" 2>/dev/null || { echo "bench/backends: mock_agent exited" >&2; exit 1; }
  sleep 0.1
done
port=$(sed -n 's/.*"https": *\([0-9]*\).*/\1/p' "$dir/ports.json")
[ -n "$port" ] || { echo "bench/backends: mock_agent did not listen" >&2; exit 1; }

"$build/bench/backends/bench_backends" --url "https://localhost:$port/agent" --ca "$dir/certs/ca.pem" \
  --bare "$build/bench/backends/bench_backends_bare" --hold-ms 1000 "$@"
