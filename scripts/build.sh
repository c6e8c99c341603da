#!/usr/bin/env bash
# Installs what the build needs (scripts/setup.sh), configures and builds into build/ (or
# build-asan/ with --sanitize). Binaries land in build/bin/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
dir=build
flags=(-DFERRY_WERROR=ON)
if [[ "${1:-}" == "--sanitize" ]]; then
  dir=build-asan
  flags+=(-DFERRY_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
fi
cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
ninja -C "$dir" -j"$(nproc)" "${@:2}"
