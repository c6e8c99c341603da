#!/usr/bin/env bash
# Installs what the build needs (scripts/setup.sh), configures and builds into build/ (or
# build-asan/ with --sanitize). Binaries land in build/bin/.
#   scripts/build.sh                 everything: binaries, tests, benchmarks (scripts/test.sh uses this)
#   scripts/build.sh --demo          only what `migrate demo` runs: ferry-agent, ferry-vmm, migrate, the guest image
#   scripts/build.sh --sanitize      everything, with ASan+UBSan, in build-asan/
#   scripts/build.sh [...] TARGET..  only these ninja targets
# It says what it does, a line per step: the build takes minutes on a small machine.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
flags=(-DFERRY_WERROR=ON -DCMAKE_INSTALL_PREFIX=/usr)
targets=()
what="everything (binaries, tests, benchmarks)"
while (($#)); do
  case "$1" in
    --sanitize) dir=build-asan; flags+=(-DFERRY_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug) ;;
    --demo) targets+=(ferry-agent ferry-vmm migrate ferry_guest); what="what the demo needs" ;;
    -*) echo "build.sh: unknown option $1 (--demo, --sanitize, or ninja targets)" >&2; exit 2 ;;
    *) targets+=("$1"); what="the targets asked for" ;;
  esac
  shift
done
start=$SECONDS
step() { echo "build: [$1/3] $2" >&2; }
elapsed() { printf '%dm%02ds' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)); }

step 1 "setup: Debian packages the build needs (scripts/setup.sh)"
scripts/setup.sh
step 2 "configure: $dir/ (cmake, Ninja, warnings as errors)"
cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
jobs=$(nproc)
if ((${#targets[@]})); then
  step 3 "build: $what: ${#targets[@]} targets (${targets[*]}) with $jobs jobs"
else
  step 3 "build: $what with $jobs jobs; about 10 minutes on 2 cores, less with ccache (scripts/build.sh --demo builds only the demo's 4 targets)"
fi
ninja -C "$dir" -j"$jobs" "${targets[@]}"
echo "build: done in $(elapsed); binaries in $dir/bin/" >&2
