#!/usr/bin/env bash
# Build sandgate and run it in the foreground with the built-in defaults
# (no config file: plaintext on 127.0.0.1:50051, data in ./sandgate-data).
# Extra arguments go to the daemon, e.g.
#   tools/run.sh --listen 127.0.0.1:6000
#   tools/run.sh --config docs/sandgate.yaml
set -euo pipefail

cd "$(dirname "$0")/.."

tools/deps.sh
if [ ! -f build/build.ninja ]; then
  meson setup build
fi
ninja -C build
exec build/server/sandgate "$@"
