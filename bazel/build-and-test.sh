#!/usr/bin/env bash
# Builds every target with Bazel (offline) and runs the unit tests; always
# shuts the Bazel server down; ends with a plain "bazel: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
trap 'bazel shutdown >/dev/null 2>&1 || true' EXIT
if ! bazel build //... ; then
  echo "bazel: the build failed"
  exit 1
fi
log=$(mktemp)
bazel test //tests/unit/... 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
passed=$(grep -c ' PASSED in ' "$log" || true)
failed=$(grep -cE ' (FAILED|TIMEOUT|NO STATUS) in | FAILED$' "$log" || true)
rm -f "$log"
echo "bazel: $passed passed, $failed failed"
exit $rc
