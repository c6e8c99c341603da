#!/bin/bash
# Storage migration benchmark (docs/storage_migration.md; issue 12, must-show 4): a KVM guest with a
# 2 GiB disk of which 1 GiB holds data, its disk workload writing 16 MiB at 8 MiB/s, moved by
# `migrate vm migrate --to-datastore` between two datastore directories of one file system, two
# agents on this host. Both disk copy modes in the same run: the VM moves a -> b with the first
# mode and back b -> a with the second (default: iterate, then mirror; MODES="mirror iterate"
# swaps them). Prints each migration's total, downtime and disk throughput, the guest's disk
# write rate before the migration and while its writes were mirrored (or, in iterate mode, over
# the same window after the bulk copy), next to a same-run dd baseline (copying the same 1 GiB
# between the two directories, fdatasync'ed).
#
#   bench/storage/storage_migration_bench.sh BIN_DIR [WORK_DIR]
set -euo pipefail
BIN=$(cd "$1" && pwd)
WORK=${2:-/var/tmp/ferry-storage-bench}
rm -rf "$WORK"
mkdir -p "$WORK/ds-a" "$WORK/ds-b" "$WORK/agent-a" "$WORK/agent-b"
cat /proc/sys/kernel/random/uuid > "$WORK/ds-a/.ferry-datastore-id"
cat /proc/sys/kernel/random/uuid > "$WORK/ds-b/.ferry-datastore-id"
for h in a b; do
  cat > "$WORK/host-$h.yaml" <<YAML
name: host-$h
memory: {total: 8GiB}
migration_interface: {address: 127.0.0.1, link_speed_mbps: 10000}
datastores:
  - {name: local-$h, path: $WORK/ds-$h}
YAML
done
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # The VMM processes the agents started (they outlive their agents by design).
  for f in "$WORK"/agent-*/vms/*/vmm.pid "$WORK"/ds-*/*/vmm.pid "$WORK"/ds-*/*/vmm-*/vmm.pid; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
}
trap cleanup EXIT
for h in a b; do
  "$BIN/ferry-agent" --name "host-$h" --listen 127.0.0.1:0 --port-file "$WORK/$h.port" --data-dir "$WORK/agent-$h" \
    --host-facts "$WORK/host-$h.yaml" --insecure > "$WORK/agent-$h.log" 2>&1 &
  PIDS+=($!)
done
for h in a b; do for _ in $(seq 100); do [ -s "$WORK/$h.port" ] && break; sleep 0.1; done; done
A=127.0.0.1:$(cat "$WORK/a.port"); B=127.0.0.1:$(cat "$WORK/b.port")
M() { "$BIN/migrate" --insecure "$@"; }

M --agent "$A" vm create big --backend kvm --memory 256MiB --working-set 32MiB --dirty-rate 8 \
  --datastore local-a --disk 2GiB --no-start > /dev/null
# The guest's disk workload goes into vm.yaml (create validates it before the datastore disk exists).
sed -i 's/^\(  tick_ms: .*\)$/\1\n  disk_working_set: 16777216\n  disk_rate: 8/' "$WORK/ds-a/big/vm.yaml"
# 1 GiB of data in the second half of the disk (the guest's working set is its first 16 MiB).
dd if=/dev/urandom of="$WORK/ds-a/big/disk0.raw" bs=4M count=256 seek=256 conv=notrunc,fdatasync status=none
# Baseline: the same 1 GiB copied between the two datastore directories, written through.
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
DD=$(dd if="$WORK/ds-a/big/disk0.raw" of="$WORK/ds-b/baseline.raw" bs=4M skip=256 count=256 conv=fdatasync 2>&1 | tail -1)
rm -f "$WORK/ds-b/baseline.raw"
M --agent "$A" vm start big > /dev/null
sleep 4  # the guest boots and its disk workload runs
echo "dd baseline: $DD"

# Samples the guest's disk_blocks_written on agent $1 every 0.2 s into $2 ("epoch_s blocks").
sample() {
  while :; do
    local j
    j=$(M --agent "$1" vm show big --json 2>/dev/null) || true
    python3 -c 'import json,sys,time
try:
    h = json.loads(sys.argv[1]).get("health", {})
    print("%.3f %s" % (time.time(), h.get("disk_blocks_written", h.get("diskBlocksWritten", 0))))
except Exception:
    pass' "$j" >> "$2"
    sleep 0.2
  done
}

run_mode() {  # MODE FROM TO TO_DATASTORE LABEL
  local mode=$1 from=$2 to=$3 ds=$4 label=$5
  : > "$WORK/samples-$label.txt"
  sample "$from" "$WORK/samples-$label.txt" &
  local sampler=$!
  sleep 3  # the guest's write rate before the migration
  local t0
  t0=$(date +%s.%N)
  M --agent "$from" vm migrate big --to "$to" --to-datastore "$ds" --disk-copy "$mode" --json > "$WORK/result-$label.json"
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  sleep 2
  M --agent "$to" vm show big --json > "$WORK/after-$label.json" 2>/dev/null || M --agent "$to" vm list > "$WORK/after-$label.json"
  python3 - "$WORK/result-$label.json" "$WORK/after-$label.json" "$WORK/samples-$label.txt" "$t0" "$mode" <<'PY'
import json, re, sys
r = json.load(open(sys.argv[1]))
s = r.get("stats", r)
def g(k, d=0, src=None):
    src = s if src is None else src
    for key in (k, re.sub(r'_([a-z])', lambda m: m.group(1).upper(), k)):
        if key in src: return src[key]
    return d
mode = sys.argv[5]
disk_mib = float(g("disk_bytes")) / 2**20
bulk_s = float(g("disk_bulk_ms")) / 1000
pause = g("pause", {})
print(f"[{mode}] total_ms={float(g('total_ms')):.0f} downtime_ms={float(g('downtime_ms')):.1f} "
      f"disk_MiB={disk_mib:.0f} disk_bulk_s={bulk_s:.2f} disk_MiBps={disk_mib / bulk_s if bulk_s else 0:.0f} "
      f"disk_rounds={g('disk_rounds')} final_blocks={g('disk_final_blocks')} "
      f"final_disk_ms={float(g('final_disk_ms', 0, pause)):.1f} mirror_cuts={g('disk_mirror_cuts')} "
      f"mirror_blocks={g('disk_mirror_blocks')} mirror_ms={float(g('disk_mirror_ms')):.0f}")
# The guest's write rate: 3 s before the migration, and after the bulk copy until the pause
# (the mirror's window; approximated from the migration's own figures: start + setup + bulk).
samples = [tuple(map(float, l.split())) for l in open(sys.argv[3]) if len(l.split()) == 2]
t0 = float(sys.argv[4])
def rate(a, b):
    pts = [p for p in samples if a <= p[0] <= b]
    if len(pts) < 2 or pts[-1][0] <= pts[0][0]: return float("nan")
    return (pts[-1][1] - pts[0][1]) * 4096 / 2**20 / (pts[-1][0] - pts[0][0])
w0 = t0 + (float(g("setup_ms")) + float(g("disk_bulk_ms"))) / 1000
w1 = t0 + (float(g("total_ms")) - float(g("downtime_ms"))) / 1000
print(f"[{mode}] guest disk writes: before {rate(t0 - 3, t0):.2f} MiB/s, after the bulk copy until the pause "
      f"({w1 - w0:.1f} s) {rate(w0, w1):.2f} MiB/s")
after = open(sys.argv[2]).read()
try:
    h = json.loads(after).get("health", {})
    print(f"[{mode}] destination guest:", {k: h.get(k, 0) for k in ("corruptions", "disk_corruptions", "disk_io_errors", "disk_sweeps")})
except ValueError:
    print(f"[{mode}] destination:", after[:400])
print(f"[{mode}] pause:", pause)
PY
}

read -r -a MODE_LIST <<< "${MODES:-iterate mirror}"
run_mode "${MODE_LIST[0]}" "$A" "$B" local-b 1
run_mode "${MODE_LIST[1]}" "$B" "$A" local-a 2
