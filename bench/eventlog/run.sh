#!/usr/bin/env bash
# bench/eventlog: the event log and StreamEvents, each figure with a
# baseline measured in the same run (see bench_eventlog.c, bench_stream.c):
#   1. durable appends through the processor against raw RocksDB
#      WriteBatch+sync from the same program (in process);
#   2. recovery of a log of 1,000,000 events written by the engine, then
#      agentosd's start-to-serving on that log;
#   3. StreamEvents from the backlog against a plain gRPC server-streaming
#      loop (bench_stream_server), live append-to-delivery latency, 100
#      subscribers, against the real agentosd.
# The servers are pinned to CPU 0 and the gRPC client to CPU 1 (as
# bench/rpc does), when taskset and two CPUs are there.
#   bash bench/eventlog/run.sh BUILD_DIR [--quick]
set -euo pipefail
build=$1
shift
quick=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=(--quick) ;;
    *) echo "bench/eventlog: unknown argument $arg" >&2; exit 2 ;;
  esac
done
agentosd=$build/server/agentosd
bench=$build/bench/eventlog/bench_eventlog
client=$build/bench/eventlog/bench_stream
plain=$build/bench/eventlog/bench_stream_server
for bin in "$agentosd" "$bench" "$client" "$plain"; do
  [ -x "$bin" ] || { echo "bench/eventlog: $bin is not built" >&2; exit 1; }
done

source "$(dirname "$0")/../lib.sh"
ao_bench_pin
ao_bench_scratch eventlog

port_of() { ao_bench_port_of "$1" "$2" 60; }

# SIGTERM one server and require a clean exit.
stop() {
  local pid=$1 name=$2
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait "$pid"; then
    echo "bench/eventlog: $name (pid $pid) did not exit cleanly" >&2
    return 1
  fi
  local kept=()
  for p in "${pids[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  pids=("${kept[@]+"${kept[@]}"}")
}

config() {
  local data=$1
  cat <<EOF
{
  "listen": ["127.0.0.1:0"],
  "storage": {"dataDir": "$data"},
  "agents": [
    {"name": "noop", "kind": "BACKEND_KIND_BUILTIN", "maxConcurrency": 100000},
    {"name": "hold", "kind": "BACKEND_KIND_BUILTIN", "maxConcurrency": 100000, "builtin": {"hang": true}}
  ],
  "limits": {"maxActiveWorkflows": 100000},
  "shutdownGraceSeconds": 2
}
EOF
}

status=0
echo "bench/eventlog: $pinning; scratch $dir"
"$bench" --dir "$dir" --only append "${quick[@]}" || status=1
"$bench" --dir "$dir" --only recovery --keep-log "${quick[@]}" || status=1

# agentosd on (a copy of) that log: from exec to Health SERVING.
if [ -d "$dir/recovery-log" ]; then
  cp -a "$dir/recovery-log" "$dir/start-log"
  rm -rf "$dir/recovery-log"
  config "$dir/start-log" >"$dir/start.json"
  t0=$(date +%s%N)
  # Unpinned, like the in-process measurement above: RocksDB's background
  # flush of the replayed log runs beside the engine's recovery.
  "$agentosd" --config "$dir/start.json" >"$dir/start.log" 2>&1 &
  start_pid=$!
  pids+=("$start_pid")
  if start_port=$(port_of "$dir/start.log" "$start_pid"); then
    ms=$("$client" --wait-serving "127.0.0.1:$start_port" --since-ns "$t0") || status=1
    recovered=$(sed -n 's/.*recovered \(workflows=.*\)/\1/p' "$dir/start.log" | head -n 1)
    echo "== agentosd start-to-serving on that log (exec to Health SERVING, WAL replay included): ${ms:-?} ms"
    echo "   its log: recovered $recovered"
  else
    status=1
  fi
  stop "$start_pid" "agentosd (start-to-serving)" || status=1
  rm -rf "$dir/start-log"
  echo
fi

# StreamEvents: agentosd on a fresh log and the plain loop, each with one
# completion-queue thread on its one CPU: with two threads on one CPU both
# servers pay a cross-thread wakeup on most messages (measured here: about
# 15 us/msg instead of 9 on both sides), which would hide the cost of the
# hub and the log reads that the ratio is about.
config "$dir/stream-log" >"$dir/stream.json"
"${pin_server[@]}" "$agentosd" --config "$dir/stream.json" --rpc-threads 1 >"$dir/agentosd.log" 2>&1 &
ao_pid=$!
pids+=("$ao_pid")
"${pin_server[@]}" "$plain" --listen 127.0.0.1:0 --threads 1 --event-bytes 200 >"$dir/plain.log" 2>&1 &
plain_pid=$!
pids+=("$plain_pid")
ao_port=$(port_of "$dir/agentosd.log" "$ao_pid")
plain_port=$(port_of "$dir/plain.log" "$plain_pid")
echo "== StreamEvents: agentosd pid $ao_pid, plain gRPC loop pid $plain_pid"
"${pin_client[@]}" "$client" --subject "127.0.0.1:$ao_port@$ao_pid" \
  --baseline "127.0.0.1:$plain_port@$plain_pid" --event-bytes 200 "${quick[@]}" || status=1
stop "$ao_pid" agentosd || status=1
stop "$plain_pid" bench_stream_server || status=1
if [ "$status" -ne 0 ]; then
  echo "--- agentosd log" >&2; tail -n 20 "$dir/agentosd.log" >&2 || true
  echo "--- plain loop log" >&2; tail -n 20 "$dir/plain.log" >&2 || true
fi
exit $status
