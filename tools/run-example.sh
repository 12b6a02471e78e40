#!/usr/bin/env bash
# `make run`: the design note's acquisition due diligence, end to end.
#
# Starts the TLS mock agent (HTTPS JSON and OpenAI-compatible endpoints,
# with certificates made here), then agentosd on an embedded RocksDB under
# ./var, submits examples/workflows/acquisition.json with agentosctl and
# follows it: the streamed events as they happen, then the result. The legal
# reviewer is set to fail (HTTP 503): the run shows its retries, its circuit
# breaker opening, and a PARTIAL_SUCCESS with the impact and recommendations.
# Everything started here is stopped on exit.
#
# usage: tools/run-example.sh [BUILD_DIR]   (env AGENTOS_PORT, AGENTOS_VAR)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
var=${AGENTOS_VAR:-$here/var}
port=${AGENTOS_PORT:-7700}
mkdir -p "$var"
var=$(cd "$var" && pwd)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

bash "$here/tools/make-certs.sh" "$var/certs"
[ -f "$var/api-key" ] || { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$var/api-key"; chmod 600 "$var/api-key"; }

# The mock agent: mTLS optional (the legal reviewer presents a client cert).
rm -f "$var/mock-ports.json"
"$build/tools/mock_agent" --cert "$var/certs/server.pem" --key "$var/certs/server.key" \
  --client-ca "$var/certs/ca.pem" --https-port 0 --grpc-port 0 --port-file "$var/mock-ports.json" \
  --prompt-tokens 900 --completion-tokens 400 --quiet 2> "$var/mock_agent.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$var/mock-ports.json" ] && break; sleep 0.05; done
mock_https=$(sed -n 's/.*"https": \([0-9]*\).*/\1/p' "$var/mock-ports.json")
[ -n "$mock_https" ] || { echo "run-example: the mock agent did not start:"; cat "$var/mock_agent.log"; exit 1; }

sed -e "s#@PORT@#$port#g" -e "s#@VAR@#$var#g" -e "s#@MOCK_HTTPS@#$mock_https#g" \
  "$here/examples/acquisition/agentosd.json.in" > "$var/agentosd.json"
"$build/server/agentosd" --config "$var/agentosd.json" 2> "$var/agentosd.log" &
pids+=($!)
ctl=("$build/tools/agentosctl" --server "127.0.0.1:$port")
for i in $(seq 200); do
  "${ctl[@]}" --timeout 1 list >/dev/null 2>&1 && break
  if ! kill -0 "${pids[1]}" 2>/dev/null; then echo "run-example: agentosd did not start:"; cat "$var/agentosd.log"; exit 1; fi
  sleep 0.05
done

echo "== agentosd on 127.0.0.1:$port (data in $var/agentos), mock agent on https://localhost:$mock_https"
echo "== submitting examples/workflows/acquisition.json, following its events"
set +e
"${ctl[@]}" submit "$here/examples/workflows/acquisition.json" --follow
code=$?
set -e
id=$("${ctl[@]}" --json list --label deal=acme-robotics | sed -n 's/.*"id":"\([^"]*\)".*/\1/p' | head -1)
echo
echo "== agentosctl status $id"
"${ctl[@]}" status "$id"
echo
echo "== agentosctl agents"
"${ctl[@]}" agents
echo
echo "== done: the workflow ended with exit code $code (3 = PARTIAL_SUCCESS); logs in $var"
