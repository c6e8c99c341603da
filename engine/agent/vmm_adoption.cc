#include "engine/agent/vmm_adoption.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/remote_vm.h"
#include "engine/agent/vmm_launcher.h"
#include "engine/storage/datastore_vm.h"
#include "engine/vm/vm_name.h"
#include "engine/vmm/vmm_client.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
constexpr int kConnectTimeoutMs = 2'000;

std::string PidFileText(const fs::path& dir) {
  std::ifstream in(dir / kVmmPidFileName);
  std::string pid;
  in >> pid;
  return pid.empty() ? "unknown" : pid;
}

// The VMM serving `vmm_dir`, attached; or why not (`listening` false: nothing listens there).
absl::StatusOr<std::unique_ptr<RemoteVm>> Reach(const fs::path& vmm_dir, bool& listening) {
  auto conn = VmmConnection::Connect((vmm_dir / kVmmSocketName).string(), kConnectTimeoutMs);
  listening = conn.ok();
  if (!conn.ok()) return conn.status();
  return RemoteVm::Attach(std::move(*conn));
}

std::string LostReason(const fs::path& vmm_dir, const absl::Status& why) {
  return absl::StrCat("its VMM process (pid ", PidFileText(vmm_dir), ") was not found at agent start: ", why.message());
}

// A socket nothing listens on: its VMM is gone, the socket and pid file are stale.
void RemoveStale(const fs::path& vmm_dir) {
  std::error_code ec;
  fs::remove(vmm_dir / kVmmSocketName, ec);
  fs::remove(vmm_dir / kVmmPidFileName, ec);
}

bool Register(const std::string& name, std::unique_ptr<RemoteVm> vm, VmRegistry& vms, AdoptionSummary& summary) {
  const std::string log = vm->console_log_path();
  const VmRunState state = vm->run_state();
  const pid_t pid = vm->vmm_pid();
  const std::string lock = vm->lock_path();
  const std::optional<v1::VmmHandover> handover = vm->adopted_handover();
  const std::string arrived_by = vm->arrived_by_migration();
  if (absl::Status st = vms.Reserve(name); !st.ok()) {
    spdlog::error("event=vmm_adopt_failed vm={} error=\"{}\"", name, std::string(st.message()));
    return false;
  }
  if (absl::Status st = vms.Adopt(name, std::move(vm), {log, arrived_by}); !st.ok()) {
    spdlog::error("event=vmm_adopt_failed vm={} error=\"{}\"", name, std::string(st.message()));
    vms.Release(name);
    return false;
  }
  spdlog::info("event=vm_adopted vm={} pid={} state={}{}", name, pid, VmRunStateName(state),
               lock.empty() ? "" : absl::StrCat(" lock=", lock));
  if (handover) {
    if (handover->migration_id().empty() || handover->destination().empty()) {
      // Marked by an agent that did not say where to: nobody can be asked. Never resumed blindly.
      spdlog::error("event=vm_adopted_paused_after_commit vm={} action=kept_paused (the mark names no destination; "
                    "find where the VM runs, then stop or resume it here)",
                    name);
    } else {
      spdlog::warn("event=vm_adopted_paused_after_commit vm={} migration={} destination={} action=settle",
                   name, handover->migration_id(), handover->destination());
      summary.paused_after_commit.push_back(
          {handover->migration_id(), {name, handover->destination(), handover->destination_name()}});
    }
  }
  return true;
}

}  // namespace

AdoptionSummary AdoptRunningVmms(const std::string& data_dir, VmRegistry& vms) {
  AdoptionSummary summary;
  if (data_dir.empty()) return summary;
  std::error_code ec;
  const fs::path root = fs::path(data_dir) / "vms";
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const fs::path socket = entry.path() / kVmmSocketName;
    if (!fs::exists(fs::symlink_status(socket, ec))) continue;
    const std::string name = entry.path().filename().string();
    if (!ValidateVmName(name).ok()) continue;  // not a directory this agent made
    bool listening = false;
    auto vm = Reach(entry.path(), listening);
    if (!vm.ok()) {
      const std::string reason = LostReason(entry.path(), vm.status());
      spdlog::error("event=vmm_lost vm={} reason=\"{}\"", name, reason);
      vms.RecordLost(name, reason);
      if (!listening) RemoveStale(entry.path());
      ++summary.lost;
      continue;
    }
    if (Register(name, std::move(*vm), vms, summary)) ++summary.adopted;
  }
  return summary;
}

AdoptionSummary AdoptDatastoreVmms(const HostFacts& host, const std::string& agent, VmRegistry& vms,
                                   VmOwnership& ownership) {
  AdoptionSummary summary;
  for (const DatastoreFacts& ds : host.datastores) {
    auto names = ListDatastoreVms(ds);
    if (!names.ok()) continue;
    for (const std::string& name : *names) {
      const std::string dir = (fs::path(ds.path) / name).string();
      const fs::path vmm_dir = DatastoreVmmDirectory(dir, agent);  // this agent's VMMs only
      std::error_code ec;
      if (!fs::exists(fs::symlink_status(vmm_dir / kVmmSocketName, ec))) continue;
      bool listening = false;
      auto vm = Reach(vmm_dir, listening);
      if (!vm.ok() && listening) {  // something serves the VM but cannot be driven: it still runs
        const std::string reason = LostReason(vmm_dir, vm.status());
        spdlog::error("event=vmm_lost vm={} reason=\"{}\"", name, reason);
        vms.RecordLost(name, reason);
        ++summary.lost;
        continue;
      }
      if (!vm.ok()) {  // the VMM is dead, and its lock with it: the VM is powered off
        const std::string reason = LostReason(vmm_dir, vm.status());
        spdlog::error("event=vmm_lost vm={} datastore={} reason=\"{}\"", name, ds.name, reason);
        RemoveStale(vmm_dir);
        ownership.NoteLost(name, reason);
        ++summary.lost;
        continue;
      }
      auto defined = OpenDatastoreVm(ds, dir);
      if (!Register(name, std::move(*vm), vms, summary)) continue;
      if (defined.ok()) {
        ownership.Put(std::move(*defined));
      } else {
        spdlog::warn("event=vm_adopted_config_unreadable vm={} error=\"{}\"", name,
                     std::string(defined.status().message()));
      }
      ++summary.adopted;
    }
  }
  return summary;
}

}  // namespace ferry
