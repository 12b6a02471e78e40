#!/usr/bin/env bash
# `make run` in CI: runs tools/run-example.sh (what `make run` runs after
# building) with this build's binaries on a free port, and checks its output
# for what the example must show: the streamed events, the legal reviewer's
# retries and its breaker opening, a budget warning, and PARTIAL_SUCCESS
# with the impact and recommendations.
set -euo pipefail
build=${1:?usage: test_make_run.sh BUILD_DIR}
here=$(cd "$(dirname "$0")/../.." && pwd)
var=$(mktemp -d /tmp/agentos-make-run-XXXXXX)
trap 'rm -rf "$var"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
out=$(AGENTOS_VAR="$var" AGENTOS_PORT="$port" timeout 300 bash "$here/tools/run-example.sh" "$build" 2>&1)
echo "$out"
fail=0
for want in "WORKFLOW_SUBMITTED" "ATTEMPT_FAILED         legal_review attempt 1" \
            "BREAKER_STATE_CHANGED  legal_reviewer: CLOSED -> OPEN" "BUDGET_WARNING" \
            "SYNTHESIS_COMPUTED" "workflow wf-" ": PARTIAL_SUCCESS" "impact: Cannot confirm legal compliance" \
            "recommendation: Manual review recommended: Cannot confirm legal compliance" \
            "legal_reviewer     HTTPS    OPEN" "exit code 3"; do
  if ! grep -qF -- "$want" <<<"$out"; then echo "test_make_run: missing from the output: $want"; fail=1; fi
done
if grep -q "Sanitizer\|runtime error" "$var/agentosd.log" "$var/mock_agent.log"; then
  echo "test_make_run: sanitizer report:"; cat "$var/agentosd.log" "$var/mock_agent.log"; fail=1
fi
exit $fail
