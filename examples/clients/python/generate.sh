#!/usr/bin/env bash
# Generates the Python stubs of agentos from idl/ into OUTDIR (Debian's
# protoc and grpc_python_plugin; there is no grpc_tools module there).
set -euo pipefail
out=${1:?usage: generate.sh OUTDIR}
idl=$(cd "$(dirname "$0")/../../../idl" && pwd)
mkdir -p "$out"
protoc -I"$idl" --python_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin \
  $(cd "$idl" && ls agentos/v1/*.proto)
echo "stubs in $out: PYTHONPATH=$out python3 client.py ..."
