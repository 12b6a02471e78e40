# Shared by the bench/*/run.sh scripts that start servers (source it).
#   ao_bench_pin NAME          sets pin_server and pin_client (taskset
#                              arrays: servers on CPU 0, the client on CPU 1
#                              when taskset and two CPUs are there) and
#                              pinning (what was done, for the report)
#   ao_bench_scratch NAME      makes $dir, a scratch directory, and sets a
#                              trap that kills the processes in pids (their
#                              ids: only what the script started) and
#                              removes $dir at exit
#   ao_bench_port_of LOG PID SECONDS
#                              waits for "listening ... port=N" in a
#                              server's log; prints N

ao_bench_pin() {
  if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_server=(taskset -c 0)
    pin_client=(taskset -c 1)
    pinning="servers on CPU 0, client on CPU 1"
  else
    pin_server=()
    pin_client=()
    pinning="unpinned (taskset missing or fewer than 2 CPUs): figures are less comparable"
  fi
}

ao_bench_cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}

ao_bench_scratch() {
  dir=$(mktemp -d "${TMPDIR:-/tmp}/ao-bench-$1.XXXXXX")
  pids=()
  trap ao_bench_cleanup EXIT
}

ao_bench_port_of() {
  local log=$1 pid=$2 tries=$(($3 * 100)) i port
  for ((i = 0; i < tries; i++)); do
    port=$(sed -n 's/.*listening.*port=\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
    if [ -n "$port" ]; then echo "$port"; return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.01
  done
  echo "the server logging to $log did not start:" >&2
  cat "$log" >&2
  return 1
}
