#!/usr/bin/env bash
# bench/executor: the executor's per-task overhead, durable chains against
# the fsync floor, makespan over the critical path, calls in flight.
#   bash bench/executor/run.sh BUILD_DIR [--quick]
set -euo pipefail
build=$1
shift
dir=$(mktemp -d "${TMPDIR:-/tmp}/ao-bench-executor.XXXXXX")
trap 'rm -rf "$dir"' EXIT
"$build/bench/executor/bench_executor" --dir "$dir" "$@"
