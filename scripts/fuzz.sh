#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang in build-fuzz/ and runs each one.
#   scripts/fuzz.sh [SECONDS]      replay tests/fuzz/crashes/<target>/ (fixed crashes, as
#                                  regressions), then fuzz each target SECONDS (default 60) from
#                                  its seed corpus tests/fuzz/corpus/<target>/
#   scripts/fuzz.sh --write-seeds  regenerate the seed corpora from a real synthetic VM
# New inputs the fuzzer finds go to a temporary directory; a crash lands in build-fuzz/crashes/
# and fails the run. docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build-fuzz -G Ninja -DFERRY_FUZZ=ON -DFERRY_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
targets=(peer_receiver state_loader)
ninja -C build-fuzz -j"$(nproc)" fuzz_seed_writer "${targets[@]/#/fuzz_}"

if [[ "${1:-}" == "--write-seeds" ]]; then
  build-fuzz/bin/fuzz_seed_writer tests/fuzz/corpus
  exit 0
fi
seconds=${1:-60}
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
mkdir -p build-fuzz/crashes
for t in "${targets[@]}"; do
  bin=build-fuzz/bin/fuzz_$t
  shopt -s nullglob
  regressions=(tests/fuzz/crashes/"$t"/*)
  shopt -u nullglob
  if ((${#regressions[@]})); then
    echo "fuzz: $t: replaying ${#regressions[@]} regression input(s)"
    "$bin" "${regressions[@]}"
  fi
  found=$(mktemp -d)
  echo "fuzz: $t: ${seconds} s from tests/fuzz/corpus/$t"
  # -max_len: the largest seed (a whole small migration, ~1.2 MB) plus room to grow.
  "$bin" -max_total_time="$seconds" -max_len=1500000 -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/crashes/$t-" "$found" "tests/fuzz/corpus/$t"
  rm -rf "$found"
done
