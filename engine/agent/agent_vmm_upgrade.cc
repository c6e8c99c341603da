// Agent.UpgradeVmm: a running VM moves to a new VMM process on this host (engine/agent/vmm_upgrade.h).
#include <sys/stat.h>
#include <unistd.h>

#include <random>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/agent/agent_service.h"
#include "engine/agent/remote_vm.h"
#include "engine/agent/vmm_launcher.h"
#include "engine/agent/vmm_upgrade.h"
#include "engine/base/error_text.h"
#include "engine/base/status.h"
#include "engine/transport/grpc_peer_channel.h"

namespace ferry {
namespace {

double Ms(int64_t ns) { return static_cast<double>(ns) / 1e6; }

// The new VMM's executable, as asked: absolute, a regular file, executable.
absl::StatusOr<std::string> VmmBinary(const std::string& asked, const AgentConfig& config) {
  if (asked.empty()) return config.vmm_binary.empty() ? DefaultVmmBinaryPath() : config.vmm_binary;
  if (asked.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat("--vmm-binary ", QuotedForError(asked), " is not an absolute path"));
  }
  struct stat st {};
  if (stat(asked.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || access(asked.c_str(), X_OK) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--vmm-binary ", QuotedForError(asked), " is not an executable file on this host"));
  }
  return asked;
}

}  // namespace

grpc::Status AgentService::UpgradeVmm(grpc::ServerContext*, const v1::UpgradeVmmRequest* req,
                                      v1::UpgradeVmmResponse* out) {
  auto binary = VmmBinary(req->vmm_binary(), ctx_.config);
  if (!binary.ok()) return ToGrpcStatus(binary.status());
  std::random_device rd;
  const std::string hold = absl::StrFormat("vmm-upgrade-%08x", rd());
  // Held like an outgoing migration: no migration, stop or second upgrade of the VM meanwhile.
  auto entry = ctx_.vms.BeginMigrationOut(req->name(), hold);
  if (!entry.ok()) return ToGrpcStatus(entry.status());
  auto* remote = dynamic_cast<RemoteVm*>((*entry)->vm.get());
  if (!remote) {
    ctx_.vms.EndMigrationOut(req->name(), false);
    return ToGrpcStatus(absl::FailedPreconditionError(
        absl::StrCat("VM ", QuotedForError(req->name()), " runs inside the agent, not in a VMM process: nothing to upgrade")));
  }
  auto result = ferry::UpgradeVmm(*remote, *binary, ctx_.config.name);
  if (!result.ok()) {
    ctx_.vms.EndMigrationOut(req->name(), false);
    return ToGrpcStatus(result.status());
  }
  const VmmUpgradeTimes t = result->times;
  out->set_old_pid(result->old_pid);
  out->set_new_pid(result->new_pid);
  out->set_downtime_ms(Ms(t.downtime_ns));
  out->set_vcpu_pause_ms(Ms(t.pause_ns));
  out->set_state_save_ms(Ms(t.save_ns));
  out->set_state_load_ms(Ms(t.restore_ns));
  out->set_lock_ms(Ms(t.lock_ns));
  out->set_resume_ms(Ms(t.resume_ns));
  out->set_prepare_ms(Ms(t.prepare_ns));
  out->set_finish_ms(Ms(t.finish_ns));
  out->set_vmm_binary(*binary);
  out->set_warning(result->warning);
  if (absl::Status st = ctx_.vms.ReplaceVm(req->name(), hold, std::move(result->vm)); !st.ok()) {
    return ToGrpcStatus(st);  // cannot happen while the hold is ours
  }
  if (auto e = ctx_.vms.Find(req->name())) *out->mutable_vm() = DescribeVm(req->name(), *e);
  AddHome(req->name(), out->mutable_vm());
  return grpc::Status::OK;
}

}  // namespace ferry
