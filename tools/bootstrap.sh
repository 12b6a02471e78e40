#!/usr/bin/env bash
# Installs the Debian 12 packages agentos needs, and the npm packages of the
# Node client tests. Idempotent: prints nothing and changes nothing when
# everything is there. Run as root (or with sudo available).
set -euo pipefail

packages=(
  cmake make gcc g++ pkg-config openssl curl ca-certificates
  libgrpc-dev libgrpc++-dev protobuf-compiler-grpc
  libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev
  libcurl4-openssl-dev librocksdb-dev libssl-dev libcmocka-dev libjansson-dev libjemalloc-dev
  python3 python3-grpcio python3-protobuf python3-pyflakes
  bazel-bootstrap
)

# Node.js and npm for the Node client tests: Debian's, unless a node and an
# npm are on PATH already (from any source).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node client tests: @grpc/grpc-js and @grpc/proto-loader from npm.
here=$(cd "$(dirname "$0")/.." && pwd)
node_dir="$here/examples/clients/node"
if [ -f "$node_dir/package.json" ] && [ ! -d "$node_dir/node_modules/@grpc/grpc-js" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "bootstrap: npm install in examples/clients/node"
    (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
  else
    echo "bootstrap: npm not found after installing it" >&2
    exit 1
  fi
fi
