#!/usr/bin/env bash
# bench/rpc: unary calls/s, p50/p99 latency and server CPU per call of
# agentosd's transport (grpc.health.v1.Health/Check) against a C++ gRPC
# callback server with the same method, measured by the same load client in
# the same run (see bench_rpc.c). Each server is pinned to CPU 0, the client
# to CPU 1.
#   bash bench/rpc/run.sh BUILD_DIR [--quick] [--also-2-threads] [bench_rpc options]
# --also-2-threads adds a second agentosd with --rpc-threads 2 (on its one
# core): the configuration that lost to the C++ server before the default
# became one thread per CPU (see default_threads in server/rpc/rpc.c).
set -euo pipefail
build=$1
shift
also2=0
args=()
for a in "$@"; do
  if [ "$a" = --also-2-threads ]; then also2=1; else args+=("$a"); fi
done
agentosd=$build/server/agentosd
client=$build/bench/rpc/bench_rpc
cpp=$build/bench/rpc/bench_rpc_cpp_server
for bin in "$agentosd" "$client"; do
  [ -x "$bin" ] || { echo "bench/rpc: $bin is not built" >&2; exit 1; }
done
if [ ! -x "$cpp" ]; then
  # Optional at configure time (grpc_cpp_plugin, libgrpc++): no baseline,
  # no figure worth printing.
  echo "bench/rpc: skipped: $cpp was not built (grpc_cpp_plugin or libgrpc++ missing; see tools/bootstrap.sh)"
  exit 0
fi

source "$(dirname "$0")/../lib.sh"
ao_bench_pin
ao_bench_scratch rpc

# Port 0: the kernel picks a free port and each server logs it; no race
# with other users of the machine.
"${pin_server[@]}" "$agentosd" --listen 127.0.0.1:0 --data-dir "$dir/data" \
  >"$dir/agentosd.log" 2>&1 &
ao_pid=$!
pids+=("$ao_pid")
"${pin_server[@]}" "$cpp" --listen 127.0.0.1:0 >"$dir/cpp.log" 2>&1 &
cpp_pid=$!
pids+=("$cpp_pid")
servers=("$ao_pid" "$cpp_pid")
if [ "$also2" = 1 ]; then
  "${pin_server[@]}" "$agentosd" --listen 127.0.0.1:0 --data-dir "$dir/data2" --rpc-threads 2 \
    >"$dir/agentosd2.log" 2>&1 &
  ao2_pid=$!
  pids+=("$ao2_pid")
  servers+=("$ao2_pid")
fi

port_of() { ao_bench_port_of "$1" "$2" 20; }
ao_port=$(port_of "$dir/agentosd.log" "$ao_pid")
cpp_port=$(port_of "$dir/cpp.log" "$cpp_pid")
subjects=(--subject "agentosd=127.0.0.1:$ao_port@$ao_pid")
if [ "$also2" = 1 ]; then
  ao2_port=$(port_of "$dir/agentosd2.log" "$ao2_pid")
  subjects+=(--subject "agentosd-2thr=127.0.0.1:$ao2_port@$ao2_pid")
fi

echo "bench/rpc: $pinning; agentosd pid $ao_pid ($(sed -n 's/.*rpc started threads=\([0-9]*\).*/\1/p' "$dir/agentosd.log") RPC thread(s)), C++ callback server pid $cpp_pid"
status=0
"${pin_client[@]}" "$client" "${subjects[@]}" \
  --baseline "grpc-c++-cb=127.0.0.1:$cpp_port@$cpp_pid" ${args[@]+"${args[@]}"} || status=1

# A clean stop is part of the run: SIGTERM, and every server must exit 0.
for pid in "${servers[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${servers[@]}"; do
  if ! wait "$pid"; then
    echo "bench/rpc: server pid $pid did not exit cleanly" >&2
    status=1
  fi
done
pids=()
if [ "$status" -ne 0 ]; then
  echo "--- agentosd log" >&2; tail -n 20 "$dir/agentosd.log" >&2
  echo "--- C++ server log" >&2; tail -n 20 "$dir/cpp.log" >&2
fi
exit $status
