#include "engine/agent/vm_registry.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/remote_vm.h"
#include "engine/base/clock.h"
#include "engine/vm/vm_spec_proto.h"

namespace ferry {

namespace {

std::string NoSuchVm(const std::string& name) {
  return absl::StrCat("no VM named '", name, "' runs on this agent");
}

// Bytes of guest memory the kernel has actually given the VM (the memfd's allocated blocks).
uint64_t DrawnBytes(Vm& vm) {
  struct stat st {};
  if (fstat(vm.memory().fd(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

constexpr uint64_t kMiB = 1ull << 20;

}  // namespace

absl::Status VmRegistry::Reserve(const std::string& name) {
  std::lock_guard lock(mu_);
  if (vms_.count(name)) return absl::AlreadyExistsError(absl::StrCat("a VM named '", name, "' already exists here"));
  vms_[name] = VmEntry{};
  return absl::OkStatus();
}

absl::Status VmRegistry::ReserveWithMemory(const std::string& name, uint64_t memory_bytes,
                                           uint64_t host_available_bytes) {
  std::lock_guard lock(mu_);
  if (vms_.count(name)) return absl::AlreadyExistsError(absl::StrCat("a VM named '", name, "' already exists here"));
  const uint64_t promised = OutstandingLocked();
  const uint64_t free = host_available_bytes > promised ? host_available_bytes - promised : 0;
  if (memory_bytes > free) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "not enough free memory for VM '", name, "': it needs ", memory_bytes / kMiB, " MiB, this host has ",
        free / kMiB, " MiB (", host_available_bytes / kMiB, " MiB available, ", promised / kMiB,
        " MiB promised to other VMs)"));
  }
  VmEntry e;
  e.reserved_memory_bytes = memory_bytes;
  vms_[name] = std::move(e);
  return absl::OkStatus();
}

absl::Status VmRegistry::Adopt(const std::string& name, std::unique_ptr<Vm> vm, AdoptedVm info) {
  if (!vm) return absl::InvalidArgumentError(absl::StrCat("no VM to adopt as '", name, "'"));
  std::lock_guard lock(mu_);
  auto it = vms_.find(name);
  if (it == vms_.end()) return absl::FailedPreconditionError(absl::StrCat("VM '", name, "' is not reserved"));
  if (it->second.vm) return absl::FailedPreconditionError(absl::StrCat("VM '", name, "' already runs here"));
  it->second.vm = std::move(vm);
  it->second.console_log_path = std::move(info.console_log_path);
  it->second.arrived_by_migration = std::move(info.arrived_by_migration);
  return absl::OkStatus();
}

void VmRegistry::Release(const std::string& name) {
  std::lock_guard lock(mu_);
  vms_.erase(name);
}

void VmRegistry::RecordLost(const std::string& name, const std::string& reason) {
  std::lock_guard lock(mu_);
  VmEntry e;
  e.failure = reason;
  vms_[name] = std::move(e);
}

VmRegistry::Snapshot VmRegistry::Find(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = vms_.find(name);
  return it == vms_.end() ? nullptr : std::make_shared<const VmEntry>(it->second);
}

std::vector<std::pair<std::string, VmRegistry::Snapshot>> VmRegistry::List() const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<std::string, Snapshot>> out;
  out.reserve(vms_.size());
  for (const auto& [name, e] : vms_) out.emplace_back(name, std::make_shared<const VmEntry>(e));
  return out;
}

size_t VmRegistry::size() const {
  std::lock_guard lock(mu_);
  return vms_.size();
}

uint64_t VmRegistry::OutstandingMemoryBytes() const {
  std::lock_guard lock(mu_);
  return OutstandingLocked();
}

uint64_t VmRegistry::OutstandingLocked() const {
  uint64_t sum = 0;
  for (const auto& [name, e] : vms_) {
    if (!e.reserved_memory_bytes) continue;
    const uint64_t drawn = e.vm ? DrawnBytes(*e.vm) : 0;
    if (drawn < e.reserved_memory_bytes) sum += e.reserved_memory_bytes - drawn;
  }
  return sum;
}

absl::StatusOr<VmRegistry::Snapshot> VmRegistry::BeginMigrationOut(const std::string& name, const std::string& id) {
  return BeginOut(name, id, VmRunState::kRunning, "; only a running VM can be live-migrated");
}

absl::StatusOr<VmRegistry::Snapshot> VmRegistry::BeginResolveOut(const std::string& name, const std::string& id) {
  return BeginOut(name, id, VmRunState::kPaused, ", not paused by an unconfirmed commit");
}

absl::StatusOr<VmRegistry::Snapshot> VmRegistry::BeginOut(const std::string& name, const std::string& id,
                                                          VmRunState required, const char* otherwise) {
  std::lock_guard lock(mu_);
  auto it = vms_.find(name);
  if (it == vms_.end() || !it->second.vm) return absl::NotFoundError(NoSuchVm(name));
  VmEntry& e = it->second;
  if (!e.outgoing_migration.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("VM '", name, "' is already migrating (", e.outgoing_migration, ")"));
  }
  if (e.stopping) return absl::FailedPreconditionError(absl::StrCat("VM '", name, "' is stopping"));
  if (e.vm->run_state() != required) {
    return absl::FailedPreconditionError(
        absl::StrCat("VM '", name, "' is ", VmRunStateName(e.vm->run_state()), otherwise));
  }
  e.outgoing_migration = id;
  return std::make_shared<const VmEntry>(e);
}

void VmRegistry::EndMigrationOut(const std::string& name, bool vm_left) {
  std::lock_guard lock(mu_);
  auto it = vms_.find(name);
  if (it == vms_.end()) return;
  if (vm_left) {
    vms_.erase(it);
  } else {
    it->second.outgoing_migration.clear();
  }
}

absl::Status VmRegistry::ReplaceVm(const std::string& name, const std::string& id, std::unique_ptr<Vm> vm) {
  std::lock_guard lock(mu_);
  auto it = vms_.find(name);
  if (it == vms_.end() || it->second.outgoing_migration != id) {
    return absl::FailedPreconditionError(absl::StrCat("VM '", name, "' is not held by ", id));
  }
  it->second.vm = std::move(vm);
  it->second.outgoing_migration.clear();
  return absl::OkStatus();
}

absl::StatusOr<VmRegistry::Snapshot> VmRegistry::BeginStop(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = vms_.find(name);
  if (it == vms_.end() || (!it->second.vm && it->second.failure.empty())) return absl::NotFoundError(NoSuchVm(name));
  VmEntry& e = it->second;
  if (!e.outgoing_migration.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("VM '", name, "' is migrating (", e.outgoing_migration,
                                                      "); cancel the migration first"));
  }
  if (e.stopping) return absl::FailedPreconditionError(absl::StrCat("VM '", name, "' is already stopping"));
  e.stopping = true;
  return std::make_shared<const VmEntry>(e);
}

void VmRegistry::EndStop(const std::string& name, bool stopped) {
  std::lock_guard lock(mu_);
  auto it = vms_.find(name);
  if (it == vms_.end()) return;
  if (stopped) {
    vms_.erase(it);
  } else {
    it->second.stopping = false;
  }
}

v1::VmInfo DescribeVm(const std::string& name, const VmEntry& e) {
  v1::VmInfo info;
  info.set_console_log_path(e.console_log_path);
  info.set_arrived_by_migration(e.arrived_by_migration);
  const std::string failure = e.vm ? VmProcessFailure(*e.vm) : e.failure;
  if (!failure.empty()) {
    if (e.vm) *info.mutable_spec() = VmSpecToProto(e.vm->spec());
    info.mutable_spec()->set_name(name);
    info.set_state(v1::VM_POWER_STATE_FAILED);
    info.set_failure(failure);
    return info;
  }
  if (!e.vm) {
    info.mutable_spec()->set_name(name);
    info.set_state(v1::VM_POWER_STATE_MIGRATING_IN);
    return info;
  }
  *info.mutable_spec() = VmSpecToProto(e.vm->spec());
  switch (e.vm->run_state()) {
    case VmRunState::kCreated: info.set_state(v1::VM_POWER_STATE_CREATED); break;
    case VmRunState::kRunning: info.set_state(v1::VM_POWER_STATE_RUNNING); break;
    case VmRunState::kPaused: info.set_state(v1::VM_POWER_STATE_PAUSED); break;
    case VmRunState::kStopped: info.set_state(v1::VM_POWER_STATE_STOPPED); break;
  }
  if (!e.outgoing_migration.empty()) info.set_state(v1::VM_POWER_STATE_MIGRATING_OUT);
  GuestHealth h = e.vm->health();
  auto* ph = info.mutable_health();
  ph->set_heartbeats(h.heartbeats);
  ph->set_last_heartbeat_value(h.last_heartbeat_value);
  ph->set_max_heartbeat_gap_ms(NanosToMillis(h.max_heartbeat_gap_ns));
  ph->set_corruptions(h.corruptions);
  for (const auto& r : h.corruption_reports) ph->add_corruption_reports(r);
  ph->set_vcpus_booted(h.vcpus_booted);
  ph->set_shut_down(h.shut_down);
  ph->set_exit_code(h.exit_code);
  ph->set_arrived_from_other_clock(h.arrived_from_other_clock);
  ph->set_full_sweeps(h.full_sweeps);
  if (h.first_full_sweep_ns) ph->set_first_full_sweep_ms(NanosToMillis(h.first_full_sweep_ns - h.arrival_ns));
  ph->set_disk_blocks_written(h.disk_blocks_written);
  ph->set_disk_blocks_verified(h.disk_blocks_verified);
  ph->set_disk_sweeps(h.disk_sweeps);
  ph->set_disk_flushes(h.disk_flushes);
  ph->set_disk_io_errors(h.disk_io_errors);
  ph->set_disk_corruptions(h.disk_corruptions);
  if (h.last_heartbeat_ns) ph->set_since_last_heartbeat_ms(NanosToMillis(MonotonicNanos() - h.last_heartbeat_ns));
  return info;
}

}  // namespace ferry
