#include "engine/vm/vm_spec_proto.h"

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/guest/guest_abi.h"
#include "engine/memory/page.h"
#include "engine/vm/vm_name.h"

namespace ferry {

// The guest's disk workload runs on the VM's first disk (docs/guest_verification.md).
absl::Status CheckDiskWorkload(const VmSpec& s) {
  const WorkloadSpec& w = s.workload;
  auto error = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("VM spec '", s.name, "': ", parts...));
  };
  if (!(w.disk_rate_mibps >= 0) || w.disk_rate_mibps > 1e6) {
    return error("disk rate ", w.disk_rate_mibps, " MiB/s must be 0 (unlimited) .. 1000000");
  }
  if (w.disk_working_set_bytes == 0) return absl::OkStatus();
  const uint64_t mib = w.disk_working_set_bytes >> 20;
  if (w.disk_working_set_bytes % (1 << 20) != 0) {
    return error("disk working set of ", w.disk_working_set_bytes, " bytes must be a whole number of MiB");
  }
  if (s.backend == Backend::kSynthetic) {
    return error("a disk working set needs the kvm backend (the synthetic backend has no disks)");
  }
  // The guest's disk 0 is the VM's first file disk (the first virtio-blk device).
  const DiskSpec* disk = nullptr;
  for (const DiskSpec& d : s.disks) {
    if (d.kind == DiskKind::kFile) {
      disk = &d;
      break;
    }
  }
  if (disk == nullptr) return error("a disk working set of ", mib, " MiB needs a file disk, and the VM has none");
  if (disk->size_bytes != 0 && disk->size_bytes < w.disk_working_set_bytes) {
    return error("disk working set of ", mib, " MiB is larger than its disk (", disk->size_bytes >> 20, " MiB)");
  }
  return absl::OkStatus();
}

v1::VmSpec VmSpecToProto(const VmSpec& s) {
  v1::VmSpec p;
  p.set_name(s.name);
  p.set_backend(s.backend == Backend::kSynthetic ? v1::BACKEND_KIND_SYNTHETIC : v1::BACKEND_KIND_KVM);
  p.set_memory_bytes(s.memory_bytes);
  p.set_vcpus(s.vcpus);
  auto* w = p.mutable_workload();
  w->set_working_set_bytes(s.workload.working_set_bytes);
  w->set_dirty_rate_mibps(s.workload.dirty_rate_mibps);
  w->set_pattern(s.workload.pattern);
  w->set_seed(s.workload.seed);
  w->set_tick_ms(s.workload.tick_ms);
  w->set_disk_working_set_bytes(s.workload.disk_working_set_bytes);
  w->set_disk_rate_mibps(s.workload.disk_rate_mibps);
  p.mutable_cpu()->set_model(s.cpu.model);
  for (const auto& f : s.cpu.features) p.mutable_cpu()->add_features(f);
  for (const auto& d : s.disks) {
    auto* pd = p.add_disks();
    pd->set_kind(static_cast<v1::DiskKind>(static_cast<int>(d.kind)));
    pd->set_path(d.path);
    pd->set_device(d.device);
    pd->set_size_bytes(d.size_bytes);
    pd->set_filled_by_this_host(d.filled_by_this_host);
  }
  for (const auto& n : s.nics) {
    auto* pn = p.add_nics();
    pn->set_mac(n.mac);
    pn->set_port_group(n.port_group);
  }
  return p;
}

absl::StatusOr<VmSpec> VmSpecFromProto(const v1::VmSpec& p, DiskWorkloadCheck disk_check) {
  VmSpec s;
  RETURN_IF_ERROR(ValidateVmName(p.name()));
  s.name = p.name();
  switch (p.backend()) {
    case v1::BACKEND_KIND_KVM: s.backend = Backend::kKvm; break;
    case v1::BACKEND_KIND_SYNTHETIC: s.backend = Backend::kSynthetic; break;
    default: return absl::InvalidArgumentError(absl::StrCat("VM spec '", p.name(), "': backend is not set"));
  }
  if (p.memory_bytes() < FERRY_GUEST_MIN_MEMORY || p.memory_bytes() % kPageSize != 0) {
    return absl::InvalidArgumentError(absl::StrCat("VM spec '", p.name(), "': memory ", p.memory_bytes(),
                                                   " bytes must be a multiple of 4 KiB and at least ",
                                                   FERRY_GUEST_MIN_MEMORY >> 20, " MiB"));
  }
  s.memory_bytes = p.memory_bytes();
  if (p.vcpus() < 1 || p.vcpus() > FERRY_MAX_VCPUS) {
    return absl::InvalidArgumentError(
        absl::StrCat("VM spec '", p.name(), "': vcpus ", p.vcpus(), " must be 1..", FERRY_MAX_VCPUS));
  }
  s.vcpus = p.vcpus();
  s.workload.working_set_bytes = p.workload().working_set_bytes();
  s.workload.dirty_rate_mibps = p.workload().dirty_rate_mibps();
  s.workload.pattern = p.workload().pattern().empty() ? "random" : p.workload().pattern();
  s.workload.seed = p.workload().seed();
  s.workload.tick_ms = p.workload().tick_ms();
  s.workload.disk_working_set_bytes = p.workload().disk_working_set_bytes();
  s.workload.disk_rate_mibps = p.workload().disk_rate_mibps();
  if (s.workload.working_set_bytes + FERRY_GPA_WORKSET > s.memory_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("VM spec '", p.name(), "': working set of ",
                                                   s.workload.working_set_bytes >> 20, " MiB does not fit in ",
                                                   s.memory_bytes >> 20, " MiB of guest memory"));
  }
  s.cpu.model = p.cpu().model();
  s.cpu.features.assign(p.cpu().features().begin(), p.cpu().features().end());
  for (const auto& d : p.disks()) {
    if (d.kind() == v1::DISK_KIND_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat("VM spec '", p.name(), "': a disk has no kind"));
    }
    s.disks.push_back({static_cast<DiskKind>(static_cast<int>(d.kind())), d.path(), d.device(), d.size_bytes(),
                       d.filled_by_this_host()});
  }
  for (const auto& n : p.nics()) s.nics.push_back({n.mac(), n.port_group()});
  if (disk_check == DiskWorkloadCheck::kNow) {
    RETURN_IF_ERROR(CheckDiskWorkload(s));
  } else if (!(s.workload.disk_rate_mibps >= 0) || s.workload.disk_rate_mibps > 1e6) {
    RETURN_IF_ERROR(CheckDiskWorkload(s));  // the rate needs no disk: refused now all the same
  }
  return s;
}

}  // namespace ferry
