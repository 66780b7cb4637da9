#!/usr/bin/env bash
# Install everything needed to build and test sandgate on Debian 12:
# the Debian packages (compiler, gRPC C core, protobuf-c, meson, Python
# grpcio for the integration tests, ...) and the buf linter from npm into
# tools/node/node_modules (pinned by tools/node/package-lock.json).
#
# Idempotent and quick when everything is present: apt-get runs only when a
# package is missing, npm only when the lock file changed. Runs as root, or
# through sudo.
set -euo pipefail

cd "$(dirname "$0")/.."

PACKAGES=(
  # build (gcc's sanitizer runtimes come with it)
  gcc libc6-dev pkg-config meson ninja-build
  libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev
  grpc-proto libuv1-dev libssl-dev libyaml-dev libjansson-dev
  libsqlite3-dev libcurl4-openssl-dev
  # unit tests
  check
  # the process driver
  bubblewrap
  # integration tests (Debian's /usr/bin/python3)
  python3 python3-grpcio python3-grpc-tools python3-protobuf openssl
  # mint the tests' certificates and tokens; the Kubernetes API stand-in
  # (tests/k8s) reads the CRDs with python3-yaml
  python3-cryptography python3-jwt python3-yaml
  # load and protocol probes
  nghttp2-client
  # misc
  git ca-certificates
)

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "deps.sh: not root and no sudo; cannot install packages" >&2
    exit 1
  fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done
# buf comes from npm: node and npm must exist (a fresh machine may lack them).
if ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q "${missing[@]}"
else
  echo "deps.sh: Debian packages present"
fi

# buf, pinned in tools/node/package-lock.json. A stamp holding the lock
# file's hash skips `npm ci` when nothing changed.
NODE_DIR=tools/node
STAMP=$NODE_DIR/node_modules/.sandgate-lock.sha256
want=$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)
if [ "$want" != "$have" ] || [ ! -x "$NODE_DIR/node_modules/.bin/buf" ]; then
  echo "deps.sh: npm ci in $NODE_DIR"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$STAMP"
fi
echo "deps.sh: buf $("$NODE_DIR/node_modules/.bin/buf" --version)"
