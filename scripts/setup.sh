#!/usr/bin/env bash
# Installs the Debian packages Ferry's build, tests and benchmarks need.
# Idempotent: quiet, and no apt calls, when everything is already present.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev liburing-dev libvirt-dev libvirt0 libxml2-dev
  libcli11-dev libyaml-cpp-dev libspdlog-dev libfmt-dev libzstd-dev libxxhash-dev
  nlohmann-json3-dev libssl-dev openssl
  libfuse3-dev fuse3
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-dev
  qemu-system-x86 gnuplot-nox iproute2 binutils
  prometheus-cpp-dev libcurl4-openssl-dev systemd dpkg-dev file
  etcd-server etcd-client golang-etcd-server-dev  # HA: etcd, and its v3 API .proto files (docs/cluster.md)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done" >&2
