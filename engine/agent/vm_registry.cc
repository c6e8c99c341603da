#include "engine/agent/vm_registry.h"

#include "absl/strings/str_cat.h"
#include "engine/base/clock.h"
#include "engine/vm/vm_spec_proto.h"

namespace ferry {

absl::StatusOr<std::shared_ptr<VmEntry>> VmRegistry::Reserve(const std::string& name) {
  std::lock_guard lock(mu_);
  if (vms_.count(name)) return absl::AlreadyExistsError(absl::StrCat("a VM named '", name, "' already exists here"));
  auto e = std::make_shared<VmEntry>();
  vms_[name] = e;
  return e;
}

void VmRegistry::Release(const std::string& name) {
  std::lock_guard lock(mu_);
  vms_.erase(name);
}

std::shared_ptr<VmEntry> VmRegistry::Find(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = vms_.find(name);
  return it == vms_.end() ? nullptr : it->second;
}

std::vector<std::pair<std::string, std::shared_ptr<VmEntry>>> VmRegistry::List() const {
  std::lock_guard lock(mu_);
  return {vms_.begin(), vms_.end()};
}

size_t VmRegistry::size() const {
  std::lock_guard lock(mu_);
  return vms_.size();
}

absl::StatusOr<std::shared_ptr<VmEntry>> VmRegistry::BeginMigrationOut(const std::string& name,
                                                                       const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = vms_.find(name);
  if (it == vms_.end() || !it->second->vm) {
    return absl::NotFoundError(absl::StrCat("no VM named '", name, "' runs on this agent"));
  }
  auto& e = it->second;
  if (!e->outgoing_migration.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("VM '", name, "' is already migrating (", e->outgoing_migration, ")"));
  }
  if (e->vm->run_state() != VmRunState::kRunning) {
    return absl::FailedPreconditionError(absl::StrCat("VM '", name, "' is ", VmRunStateName(e->vm->run_state()),
                                                      "; only a running VM can be live-migrated"));
  }
  e->outgoing_migration = id;
  return e;
}

void VmRegistry::EndMigrationOut(const std::string& name, bool vm_left) {
  std::lock_guard lock(mu_);
  auto it = vms_.find(name);
  if (it == vms_.end()) return;
  if (vm_left) {
    vms_.erase(it);
  } else {
    it->second->outgoing_migration.clear();
  }
}

v1::VmInfo DescribeVm(const std::string& name, const VmEntry& e) {
  v1::VmInfo info;
  info.set_console_log_path(e.console_log_path);
  info.set_arrived_by_migration(e.arrived_by_migration);
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
  if (h.last_heartbeat_ns) ph->set_since_last_heartbeat_ms(NanosToMillis(MonotonicNanos() - h.last_heartbeat_ns));
  return info;
}

}  // namespace ferry
