#!/usr/bin/env bash
# Sets up, builds and runs every test (ctest). With --sanitize: an ASan+UBSan build of the unit
# tests (end-to-end tests that spawn agents run in the plain build only).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--sanitize" ]]; then
  scripts/build.sh --sanitize
  cd build-asan
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  ctest --output-on-failure -j2 -LE e2e -E 'QemuBoot|PrecheckCli|bench_smoke'
else
  scripts/build.sh
  cd build
  ctest --output-on-failure -j2
fi
