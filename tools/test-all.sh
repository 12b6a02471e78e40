#!/usr/bin/env bash
# `make test`: every test, on a fresh Debian 12 machine.
#   1. Bazel builds the same targets and runs the unit tests (offline); its
#      server is shut down on exit.
#   2. The release build compiles (what `make run` and the benchmarks use),
#      on jemalloc.
#   3. The ASan + UBSan build runs every test with ctest, which closes the
#      output.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
jobs=$(nproc)

if [ "${AO_SKIP_BAZEL:-0}" != 1 ] && [ -x bazel/build-and-test.sh ]; then
  echo "== bazel: build and unit tests"
  bash bazel/build-and-test.sh
fi

echo "== cmake: release build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
# The release agentosd runs on jemalloc (ao_malloc in CMakeLists.txt) with
# its options (server/malloc_conf.c), and test_util, linked the same way,
# checks that jemalloc serves its malloc and took the options.
# (grep without -q reads all of its input: -q stops at the first match, and
# under pipefail the writer's SIGPIPE would fail the pipeline.)
if ! ldd build/server/agentosd | grep libjemalloc >/dev/null; then
  echo "build/server/agentosd is not linked with jemalloc" >&2
  exit 1
fi
if ! nm -D build/server/agentosd | grep ' D malloc_conf$' >/dev/null; then
  echo "build/server/agentosd does not carry jemalloc's options (malloc_conf)" >&2
  exit 1
fi
./build/tests/unit/test_util >/dev/null

echo "== cmake: AddressSanitizer + UndefinedBehaviorSanitizer build"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DAO_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"

echo "== ctest (ASan + UBSan)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd build-asan
ctest --output-on-failure -j"$jobs" --timeout 600
