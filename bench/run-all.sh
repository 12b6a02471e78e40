#!/usr/bin/env bash
# `make bench`: every benchmark, one after the other (they measure the same
# machine; running them together would skew each other's figures). Each
# bench/<name>/run.sh takes the CMake build directory and prints figures and
# ratios against a baseline it measures in the same run.
#   bash bench/run-all.sh [BUILD_DIR] [--quick]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
shift || true
case "$build" in /*) ;; *) build="$here/$build" ;; esac
status=0
for script in "$here"/bench/*/run.sh; do
  name=$(basename "$(dirname "$script")")
  echo "== bench/$name"
  if ! bash "$script" "$build" "$@"; then
    echo "bench/$name: failed" >&2
    status=1
  fi
  echo
done
exit $status
