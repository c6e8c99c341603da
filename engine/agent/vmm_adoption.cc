#include "engine/agent/vmm_adoption.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/remote_vm.h"
#include "engine/agent/vmm_launcher.h"
#include "engine/vm/vm_name.h"
#include "engine/vmm/vmm_client.h"

namespace ferry {
namespace {

constexpr int kConnectTimeoutMs = 2'000;

std::string PidFileText(const std::filesystem::path& dir) {
  std::ifstream in(dir / kVmmPidFileName);
  std::string pid;
  in >> pid;
  return pid.empty() ? "unknown" : pid;
}

}  // namespace

AdoptionSummary AdoptRunningVmms(const std::string& data_dir, VmRegistry& vms) {
  AdoptionSummary summary;
  if (data_dir.empty()) return summary;
  std::error_code ec;
  const std::filesystem::path root = std::filesystem::path(data_dir) / "vms";
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    const std::filesystem::path socket = entry.path() / kVmmSocketName;
    if (!std::filesystem::exists(std::filesystem::symlink_status(socket, ec))) continue;
    const std::string name = entry.path().filename().string();
    if (!ValidateVmName(name).ok()) continue;  // not a directory this agent made
    auto conn = VmmConnection::Connect(socket.string(), kConnectTimeoutMs);
    absl::StatusOr<std::unique_ptr<RemoteVm>> vm =
        conn.ok() ? RemoteVm::Attach(std::move(*conn)) : absl::StatusOr<std::unique_ptr<RemoteVm>>(conn.status());
    if (!vm.ok()) {
      const std::string reason = absl::StrCat("its VMM process (pid ", PidFileText(entry.path()),
                                              ") was not found at agent start: ", vm.status().message());
      spdlog::error("event=vmm_lost vm={} reason=\"{}\"", name, reason);
      vms.RecordLost(name, reason);
      if (!conn.ok()) {  // nothing listens: the socket and pid file are stale
        std::filesystem::remove(socket, ec);
        std::filesystem::remove(entry.path() / kVmmPidFileName, ec);
      }
      ++summary.lost;
      continue;
    }
    const std::string log = (*vm)->console_log_path();
    const VmRunState state = (*vm)->run_state();
    const pid_t pid = (*vm)->vmm_pid();
    if (absl::Status st = vms.Reserve(name); !st.ok()) {
      spdlog::error("event=vmm_adopt_failed vm={} error=\"{}\"", name, std::string(st.message()));
      continue;
    }
    if (absl::Status st = vms.Adopt(name, std::move(*vm), {log, ""}); !st.ok()) {
      spdlog::error("event=vmm_adopt_failed vm={} error=\"{}\"", name, std::string(st.message()));
      vms.Release(name);
      continue;
    }
    spdlog::info("event=vm_adopted vm={} pid={} state={}", name, pid, VmRunStateName(state));
    ++summary.adopted;
  }
  return summary;
}

}  // namespace ferry
