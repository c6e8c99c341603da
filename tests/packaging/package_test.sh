#!/usr/bin/env bash
# The Debian package, end to end (docs/packaging.md): cpack builds ferry_*.deb from BUILD_DIR;
# its control fields and contents are checked with dpkg-deb; the unit passes systemd-analyze
# verify; ferry-agent's man page names every option of its --help; then the package is unpacked
# (dpkg -x) into a temporary root and its agent, started with the unit's command line and the
# packaged configuration adapted to loopback and temporary directories, serves a real RPC to the
# packaged migrate (a VM booted from the packaged guest image) and logs JSON lines.
# Exit 77 (ctest: skipped) where a tool it needs is missing.
set -euo pipefail
build=$(cd "${1:?usage: package_test.sh BUILD_DIR}" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in cpack dpkg-deb dpkg openssl python3; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (scripts/setup.sh installs it)"; exit 77; }
done
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
[[ "$prefix" == /usr ]] || fail "$build is configured with CMAKE_INSTALL_PREFIX=$prefix; the package needs /usr (scripts/build.sh sets it)"

tmp=$(mktemp -d /tmp/ferry-package-test.XXXXXX)
agent_pid=""
installed=""
cleanup() {
  if [[ -n "$installed" ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -y -qq purge ferry >/dev/null 2>&1 || true
  fi
  if [[ -n "$agent_pid" ]]; then kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== cpack"
(cd "$build" && cpack -G DEB -B "$tmp/out" >"$tmp/cpack.log" 2>&1) || { cat "$tmp/cpack.log"; fail "cpack failed"; }
deb=$(ls "$tmp"/out/ferry_*_amd64.deb 2>/dev/null | head -1)
[[ -f "$deb" ]] || fail "no ferry_*_amd64.deb in $tmp/out"

echo "== control fields"
field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Package) == ferry ]] || fail "Package: $(field Package)"
[[ $(field Architecture) == amd64 ]] || fail "Architecture: $(field Architecture)"
[[ -n $(field Version) ]] || fail "no Version"
[[ -n $(field Maintainer) ]] || fail "no Maintainer"
for dep in libc6 libgrpc++1.51 libprotobuf32 libprometheus-cpp-pull1.0 libvirt0 liburing2 libyaml-cpp0.7 libssl3; do
  field Depends | tr ',' '\n' | grep -q "^ *$dep\b" || fail "Depends lacks $dep: $(field Depends)"
done
dpkg-deb --info "$deb" conffiles | grep -qx /etc/ferry/agent.yaml || fail "/etc/ferry/agent.yaml is not a conffile"
for script in postinst prerm postrm; do
  dpkg-deb --info "$deb" "$script" >/dev/null 2>&1 || fail "no $script"
done

echo "== contents"
dpkg-deb -c "$deb" | awk '{print $6}' >"$tmp/contents"
for path in ./usr/bin/ferry-agent ./usr/bin/ferry-vmm ./usr/bin/migrate ./usr/lib/ferry/ferry-guest.elf \
            ./usr/lib/systemd/system/ferry-agent.service ./etc/ferry/agent.yaml \
            ./usr/share/man/man8/ferry-agent.8 ./usr/share/doc/ferry/README.md ./usr/share/doc/ferry/metrics.md; do
  grep -qx "$path" "$tmp/contents" || fail "the package lacks $path"
done
if grep -v -E '^\./(usr|etc)(/|$)' "$tmp/contents" | grep -q .; then
  fail "files outside /usr and /etc: $(grep -v -E '^\./(usr|etc)(/|$)' "$tmp/contents" | head -3)"
fi

root="$tmp/root"
dpkg -x "$deb" "$root"
unit="$root/usr/lib/systemd/system/ferry-agent.service"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[[ "$exec_start" == "/usr/bin/ferry-agent --config /etc/ferry/agent.yaml --json-logs" ]] || fail "ExecStart: $exec_start"

echo "== systemd-analyze verify"
if command -v systemd-analyze >/dev/null; then
  # The unit as packaged, its binary found in the unpacked root (systemd checks it is executable).
  mkdir -p "$tmp/units"
  sed "s|^ExecStart=/usr/bin/|ExecStart=$root/usr/bin/|" "$unit" >"$tmp/units/ferry-agent.service"
  out=$(systemd-analyze verify --man=no "$tmp/units/ferry-agent.service" 2>&1) || fail "systemd-analyze verify: $out"
  [[ -z "$out" ]] || fail "systemd-analyze verify warns: $out"
  # The check is live: a unit with a bad key does not pass silently.
  sed 's/^Restart=on-failure/Restart=sometimes/' "$tmp/units/ferry-agent.service" >"$tmp/units/ferry-bad.service"
  out=$(systemd-analyze verify --man=no "$tmp/units/ferry-bad.service" 2>&1 || true)
  [[ -n "$out" ]] || fail "systemd-analyze verify accepted a unit with Restart=sometimes"
else
  echo "systemd-analyze is absent: unit verification skipped (install systemd)"
fi

echo "== man page against --help"
options=$(env -u FERRY_BIN_DIR "$root/usr/bin/ferry-agent" --help | grep -oE -- '--[a-z][a-z-]+' | sort -u)
[[ -n "$options" ]] || fail "ferry-agent --help lists no options"
man_text=$(sed 's/\\-/-/g' "$root/usr/share/man/man8/ferry-agent.8")
for opt in $options; do
  grep -qF -- "$opt" <<<"$man_text" || fail "ferry-agent(8) does not describe $opt (from --help)"
done

# The agent under ROOT ("" = the installed system) started with the unit's command line and the
# packaged configuration adapted to loopback and temporary directories: it serves a real RPC to
# the packaged migrate (a VM booted from the packaged guest image) and logs JSON lines.
serves() {
  local root=$1 label=$2 pki port backend
  local -a migrate
  pki="$tmp/pki-$label"
  "$root/usr/bin/migrate" certs ca --out "$pki" >/dev/null
  "$root/usr/bin/migrate" certs host pkg-host --ca "$pki" --out "$pki" --ip 127.0.0.1 >/dev/null
  "$root/usr/bin/migrate" certs client ops --ca "$pki" --out "$pki" >/dev/null
  # The packaged configuration, pointed at loopback, temporary directories and the new certificates.
  sed -e "s|^name: .*|name: pkg-host|" -e "s|^listen: .*|listen: 127.0.0.1:0|" \
      -e "s|^data_dir: .*|data_dir: $tmp/data-$label|" -e "s|^port_file: .*|port_file: $tmp/agent-$label.port|" \
      -e "s|/etc/ferry/pki/ca.crt|$pki/ca.crt|" -e "s|/etc/ferry/pki/host-a.crt|$pki/pkg-host.crt|" \
      -e "s|/etc/ferry/pki/host-a.key|$pki/pkg-host.key|" "$root/etc/ferry/agent.yaml" >"$tmp/agent-$label.yaml"
  cmp -s "$tmp/agent-$label.yaml" "$root/etc/ferry/agent.yaml" && fail "[$label] the packaged agent.yaml did not have the expected fields"
  # The unit's command line, with the unpacked binary and the adapted configuration.
  local cmdline=${exec_start/\/usr\/bin\//$root/usr/bin/}
  cmdline=${cmdline/\/etc\/ferry\/agent.yaml/$tmp/agent-$label.yaml}
  $cmdline >"$tmp/agent-$label.log" 2>&1 &
  agent_pid=$!
  for _ in $(seq 100); do [[ -s "$tmp/agent-$label.port" ]] && break; sleep 0.1; done
  [[ -s "$tmp/agent-$label.port" ]] || { cat "$tmp/agent-$label.log"; fail "[$label] the packaged agent did not start"; }
  port=$(cat "$tmp/agent-$label.port")
  FERRY_TLS_CA="$pki/ca.crt" FERRY_TLS_CERT="$pki/ops.crt" FERRY_TLS_KEY="$pki/ops.key"
  export FERRY_TLS_CA FERRY_TLS_CERT FERRY_TLS_KEY
  migrate=("$root/usr/bin/migrate" --agent "127.0.0.1:$port" --agent-name pkg-host)
  backend=synthetic
  [[ -r /dev/kvm && -w /dev/kvm ]] && backend=kvm
  "${migrate[@]}" vm create pkg-vm --memory 64MiB --working-set 8MiB --backend "$backend" >"$tmp/create-$label.out" 2>&1 ||
    { cat "$tmp/create-$label.out" "$tmp/agent-$label.log"; fail "[$label] vm create on the packaged agent failed"; }
  sleep 0.5  # a first heartbeat
  "${migrate[@]}" vm list --json >"$tmp/list-$label.json" 2>&1 || { cat "$tmp/list-$label.json"; fail "[$label] vm list failed"; }
  python3 - "$tmp/list-$label.json" <<'PY' || fail "[$label] vm list does not show pkg-vm running: $(cat "$tmp/list-$label.json")"
import json, sys
doc = json.load(open(sys.argv[1]))
vms = doc if isinstance(doc, list) else doc.get("vms", [])
# Running, and the packaged guest image booted: it sends heartbeats.
assert any(v["spec"]["name"] == "pkg-vm" and v["state"] == "VM_POWER_STATE_RUNNING"
           and int(v["health"]["heartbeats"]) > 0 for v in vms), vms
PY
  kill -TERM "$agent_pid"
  wait "$agent_pid" || fail "[$label] the agent exited with status $? on SIGTERM"
  agent_pid=""
  # The VM's ferry-vmm process outlives its agent (docs/vmm_process.md): end it here.
  for pidfile in "$tmp/data-$label"/vms/*/vmm.pid; do
    [[ -f "$pidfile" ]] && kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
  done
  python3 - "$tmp/agent-$label.log" <<'PY' || fail "[$label] the agent's log is not one JSON object per line"
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert lines, "empty log"
for l in lines:
    o = json.loads(l)
    assert {"ts", "level", "agent", "msg"} <= o.keys(), o
assert any("event=agent_listening" in json.loads(l)["msg"] for l in lines)
PY
}

echo "== the packaged agent serves (unpacked with dpkg -x)"
unset FERRY_BIN_DIR FERRY_GUEST_IMAGE
serves "$root" unpacked

# A real install, as an operator does it on a host: `apt install ./ferry_*.deb`, the installed unit
# verified where systemd would load it, the installed agent serving, then `apt purge` leaves nothing.
# Only as root, and never over a ferry package this test did not install.
echo "== apt install ./$(basename "$deb")"
if [[ $(id -u) -ne 0 ]]; then
  echo "not root: the system install is skipped (the unpacked package was tested above)"
elif [[ -n "${FERRY_SKIP_SYSTEM_INSTALL:-}" ]]; then
  echo "FERRY_SKIP_SYSTEM_INSTALL is set: the system install is skipped"
elif dpkg-query -W -f='${Status}' ferry 2>/dev/null | grep -q "install ok installed"; then
  echo "a ferry package is already installed on this host: the system install is skipped, it is left alone"
elif ! command -v apt-get >/dev/null; then
  echo "apt-get is absent: the system install is skipped"
else
  installed=1
  apt() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -y -qq "$@"; }
  apt install --no-install-recommends "$deb" >"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log"; fail "apt install $deb failed"; }
  dpkg-query -W -f='${Status}' ferry | grep -q "install ok installed" || fail "dpkg does not list ferry as installed"
  for path in /usr/bin/ferry-agent /usr/bin/ferry-vmm /usr/bin/migrate /usr/lib/ferry/ferry-guest.elf /etc/ferry/agent.yaml; do
    [[ -e "$path" ]] || fail "apt install did not put $path in place"
  done
  if command -v systemd-analyze >/dev/null; then
    out=$(systemd-analyze verify --man=no /usr/lib/systemd/system/ferry-agent.service 2>&1) || fail "installed unit: $out"
    [[ -z "$out" ]] || fail "systemd-analyze verify warns on the installed unit: $out"
  fi
  if [[ -d /run/systemd/system ]]; then
    echo "systemd runs this host: the unit is installed disabled (systemctl is-enabled: $(systemctl is-enabled ferry-agent 2>&1 || true))"
  else
    echo "systemd is not PID 1 here ($(cat /proc/1/comm)): the unit's ExecStart runs the installed agent instead of systemctl start"
  fi
  serves "" installed
  apt purge ferry >>"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log"; fail "apt purge ferry failed"; }
  installed=""
  [[ ! -e /usr/bin/ferry-agent && ! -e /etc/ferry/agent.yaml ]] || fail "apt purge ferry left files behind"
fi

echo "PASS: $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"
