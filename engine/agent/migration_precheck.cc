#include "engine/agent/migration_precheck.h"

#include <sys/stat.h>

#include <algorithm>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "engine/agent/host_facts_source.h"
#include "engine/base/clock.h"
#include "engine/host/cpu_model.h"
#include "engine/host/host_facts_proto.h"
#include "engine/memory/page.h"
#include "engine/migration/auto_converge.h"
#include "engine/migration/convergence.h"
#include "engine/precheck/convergence_forecast.h"
#include "engine/precheck/precheck.h"
#include "engine/storage/datastore_vm.h"
#include "engine/transport/grpc_peer_channel.h"
#include "engine/vm/vm_spec_proto.h"
#include "proto/ferry/v1/peer.grpc.pb.h"

namespace ferry {
namespace {

// Marks the VM as migrating out while SampleIdleVmDirtyRate samples it.
constexpr char kSampleHolder[] = "dirty-rate sample for a precheck";

// The link figure for the forecast and where it comes from; nullopt when nothing is known.
std::optional<ConvergenceForecastInput> LinkFigureFor(const ForecastContext& fc, const HostFacts& src,
                                                      const HostFacts& dst) {
  ConvergenceForecastInput in;
  in.destination = fc.destination;
  std::optional<LinkFigure> measured = fc.links ? fc.links->Get(fc.destination) : std::nullopt;
  if (measured) {
    in.link_source = LinkSource::kMeasured;
    in.link_mib_s = measured->mib_s;
    in.link_measurements = measured->measurements;
  } else {
    uint32_t mbps = 0;  // the slower known interface; 0 = unknown (loopback, virtual NIC)
    for (const HostFacts* h : {&src, &dst}) {
      uint32_t s = h->migration_interface ? h->migration_interface->link_speed_mbps : 0;
      if (s != 0) mbps = mbps == 0 ? s : std::min(mbps, s);
    }
    in.link_source = LinkSource::kNominal;
    in.nominal_mbps = mbps;
    in.link_mib_s = mbps * 1e6 / 8 / (1024.0 * 1024.0);
  }
  const double cap = fc.options.max_bandwidth_mibps();
  if (cap > 0 && (in.link_mib_s <= 0 || cap < in.link_mib_s)) {
    in.link_source = LinkSource::kBandwidthCap;
    in.link_mib_s = cap;
  }
  if (in.link_mib_s <= 0) return std::nullopt;
  return in;
}

std::optional<Finding> Forecast(const ForecastContext& fc, const VmSpec& vm, const HostFacts& src,
                                const HostFacts& dst) {
  if (!fc.sample_dirty_rate) return std::nullopt;
  std::optional<ConvergenceForecastInput> in = LinkFigureFor(fc, src, dst);
  if (!in) return std::nullopt;  // nothing to compare with: do not disturb the guest
  std::optional<DirtyRateSample> sample = fc.sample_dirty_rate();
  if (!sample) return std::nullopt;
  in->dirty_rate_mib_s = sample->mib_s;
  in->sample_ms = sample->window_ms;
  in->memory_bytes = vm.memory_bytes;
  // The built-in guest's working set, or at least what the sample saw rewritten.
  in->working_set_bytes = std::max(vm.workload.working_set_bytes, sample->dirtied_bytes);
  in->max_downtime_ms = ConvergenceOptionsFrom(fc.options).max_downtime_ms;
  AutoConvergeOptions ac = AutoConvergeOptionsFrom(fc.options);
  in->auto_converge = ac.enabled;
  in->throttle_initial_percent = ac.initial_percent;
  in->throttle_step_percent = ac.step_percent;
  in->throttle_max_percent = ac.max_percent;
  in->shrink_ratio = 1 - kMeaningfulShrink;
  return ForecastConvergence(*in);
}

}  // namespace

std::optional<DirtyRateSample> SampleDirtyRate(Vm& vm, std::chrono::milliseconds window) {
  if (vm.run_state() != VmRunState::kRunning) return std::nullopt;
  absl::Cleanup tracking_off = [&vm] { (void)vm.DisableDirtyTracking(); };
  if (!vm.EnableDirtyTracking().ok()) return std::nullopt;
  DirtyBitmap dirty(vm.memory().num_pages());
  // Whatever the log held before now (a log that starts all-set, the VMM's own writes).
  if (!vm.CollectDirtyPages(dirty).ok()) return std::nullopt;
  dirty.ClearAll();
  const int64_t start = MonotonicNanos();
  std::this_thread::sleep_for(window);
  if (!vm.CollectDirtyPages(dirty).ok()) return std::nullopt;
  const double secs = static_cast<double>(MonotonicNanos() - start) / 1e9;
  if (secs <= 0) return std::nullopt;
  DirtyRateSample s;
  s.dirtied_bytes = dirty.Count() * kPageSize;
  s.window_ms = secs * 1000;
  s.mib_s = static_cast<double>(s.dirtied_bytes) / (1024.0 * 1024.0) / secs;
  return s;
}

std::optional<DirtyRateSample> SampleIdleVmDirtyRate(VmRegistry& vms, const std::string& name) {
  auto entry = vms.BeginMigrationOut(name, kSampleHolder);
  if (!entry.ok()) return std::nullopt;  // migrating (never disturb it) or not running
  absl::Cleanup release = [&vms, &name] { vms.EndMigrationOut(name, false); };
  return SampleDirtyRate(*(*entry)->vm);
}

namespace {

// What the VM's file disks need on the target datastore, and what the destination said it has.
StorageMove StorageMoveOf(const VmSpec& vm, const std::string& to_datastore, const v1::HostFacts& dest) {
  StorageMove m;
  m.to_datastore = to_datastore;
  m.needed_bytes = kVmDirectoryOverheadBytes;
  for (const DiskSpec& d : vm.disks) {
    if (d.kind != DiskKind::kFile) continue;
    struct stat st {};
    m.needed_bytes += d.size_bytes > 0 ? d.size_bytes : (stat(d.path.c_str(), &st) == 0 ? st.st_size : 0);
  }
  for (const v1::Datastore& ds : dest.datastores()) {
    if (ds.name() == to_datastore && ds.has_free_bytes()) m.free_bytes = ds.free_bytes();
  }
  return m;
}

}  // namespace

absl::StatusOr<std::vector<Finding>> PrecheckMigration(const AgentConfig& config, const VmSpec& vm_in,
                                                       const std::shared_ptr<grpc::Channel>& destination,
                                                       const ForecastContext& forecast,
                                                       const StorageMoveRequest& storage_request) {
  auto source = AgentHostFacts(config);
  if (!source.ok()) return source.status();
  VmSpec vm = vm_in;
  if (absl::Status st = ResolveVmCpu(vm, absl::StrCat("VM '", vm.name, "'")); !st.ok()) return st;
  auto stub = v1::Peer::NewStub(destination);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GetHostFactsRequest req;
  *req.mutable_vm() = VmSpecToProto(vm);
  *req.mutable_source() = HostFactsToProto(*source);
  v1::HostFacts dest;
  grpc::Status st = stub->GetHostFacts(&ctx, req, &dest);
  if (!st.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot get the destination's host facts: ", st.error_message()));
  }
  HostFacts dest_facts = HostFactsFromProto(dest);
  std::optional<StorageMove> storage;
  if (!storage_request.to_datastore.empty()) storage = StorageMoveOf(vm, storage_request.to_datastore, dest);
  std::vector<Finding> findings = RunPrechecks(vm, *source, dest_facts, {}, storage ? &*storage : nullptr);
  if (HasCode(findings, FindingCode::kCpuFeatureMissing)) {
    // The advice names the model to pin to (the CPU map is only consulted when it is needed).
    findings = RunPrechecks(vm, *source, dest_facts, {CommonCpuModel(*source, dest_facts)},
                            storage ? &*storage : nullptr);
  }
  if (std::optional<Finding> f = Forecast(forecast, vm, *source, dest_facts)) findings.push_back(std::move(*f));
  return findings;
}

}  // namespace ferry
