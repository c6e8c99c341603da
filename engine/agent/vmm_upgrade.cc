#include "engine/agent/vmm_upgrade.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <vector>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/vmm_launcher.h"
#include "engine/base/status.h"
#include "engine/vm/vm_spec_proto.h"
#include "engine/vmm/vmm_server.h"

namespace ferry {
namespace {

constexpr int kTakeOverCreateTimeoutMs = 120'000;  // a KVM VM with its vCPUs, on a slow nested host

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The new VMM, until it runs the guest: killed (and reaped) on any failure, with its socket.
class Successor {
 public:
  Successor(pid_t pid, std::string next_socket) : pid_(pid), next_socket_(std::move(next_socket)) {}
  ~Successor() { Abandon(); }
  pid_t pid() const { return pid_; }
  void set_vm(std::unique_ptr<RemoteVm> vm) { vm_ = std::move(vm); }
  RemoteVm& vm() { return *vm_; }
  std::unique_ptr<RemoteVm> Keep() {
    pid_ = -1;
    return std::move(vm_);
  }
  // SIGKILL first: never two VMMs running the guest, whatever state the new one reached.
  void Abandon() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    if (vm_) {
      vm_.reset();  // reaps its child
    }
    (void)waitpid(pid_, nullptr, 0);
    unlink(next_socket_.c_str());
    pid_ = -1;
  }

 private:
  pid_t pid_;
  std::string next_socket_;
  std::unique_ptr<RemoteVm> vm_;
};

absl::Status Annotate(const absl::Status& st, const std::string& step) {
  return absl::Status(st.code(), absl::StrCat(step, ": ", st.message()));
}

}  // namespace

absl::StatusOr<VmmUpgradeResult> UpgradeVmm(RemoteVm& vm, const std::string& vmm_binary,
                                            const std::string& agent_name, const VmmUpgradeHooks& hooks) {
  const std::string name = vm.spec().name;
  if (vm.run_state() != VmRunState::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat("VMM upgrade of VM '", name, "': the VM is ", VmRunStateName(vm.run_state()), ", not running"));
  }
  // The new VMM lives where the old one does (DATA_DIR/vms/NAME, or a datastore VM's vmm-AGENT).
  const std::string socket = vm.socket_path();
  const std::string vm_dir = std::filesystem::path(socket).parent_path().string();
  const std::string next_socket = socket + kTakeOverSocketSuffix;
  VmmUpgradeResult result;
  result.old_pid = vm.vmm_pid();
  const bool has_lock = !vm.lock_path().empty();
  bool record_moved = false;  // the new VMM may have named itself in the lock's holder record
  auto failed = [&](const absl::Status& why, bool paused) {
    absl::Status out(why.code(), absl::StrCat("VMM upgrade of VM '", name, "' failed: ", why.message()));
    if (paused) {
      // The old VMM never let go of the lock: it only names itself in the record again.
      absl::Status resumed = record_moved ? vm.TakeLock() : absl::OkStatus();
      if (resumed.ok()) resumed = vm.Resume();
      if (!resumed.ok()) {
        spdlog::error("event=vmm_upgrade_resume_failed vm={} error=\"{}\"", name, std::string(resumed.message()));
        return absl::Status(out.code(), absl::StrCat(out.message(), "; resuming the old VMM failed too: ",
                                                     resumed.message()));
      }
    }
    spdlog::warn("event=vmm_upgrade_failed vm={} old_pid={} error=\"{}\"", name, result.old_pid,
                 std::string(why.message()));
    return absl::Status(out.code(), absl::StrCat(out.message(), "; the VM keeps running in its VMM (pid ",
                                                 result.old_pid, ")"));
  };

  // 1. The successor, its KVM VM built over the guest's own memfd and open disks while the guest
  //    runs. It holds the lock with the old VMM from here: one open file description, never released.
  const int64_t t_start = NowNs();
  auto pid = SpawnVmm(vmm_binary, vm_dir, name, {"--take-over"});
  if (!pid.ok()) return failed(Annotate(pid.status(), "start the new VMM"), false);
  Successor next(*pid, next_socket);
  result.new_pid = *pid;
  {
    auto conn = WaitForVmmSocket(next_socket, *pid, vm_dir + "/" + kVmmLogName);
    if (!conn.ok()) return failed(Annotate(conn.status(), "the new VMM"), false);
    v1::VmmRequest create;
    v1::VmmCreate* c = create.mutable_create();
    *c->mutable_spec() = VmSpecToProto(vm.spec());
    c->set_mode(v1::VMM_START_MODE_TAKE_OVER);
    c->set_console_log_path(vm.console_log_path());
    c->set_image_path(vm.spec().image_path);
    // The old VMM's disks and lock, passed through this process and closed here once sent.
    auto files = vm.HandOverFiles();
    if (!files.ok()) return failed(Annotate(files.status(), "take the disks and lock from the old VMM"), false);
    if (has_lock != files->lock.valid()) {
      return failed(absl::FailedPreconditionError(absl::StrCat(
                        "the old VMM ", has_lock ? "handed over no lock for " : "handed over a lock, yet ",
                        has_lock ? vm.lock_path() : "the VM has no lock file")),
                    false);
    }
    std::vector<int> pass = {vm.memory().fd()};
    for (const UniqueFd& d : files->disks) pass.push_back(d.get());
    c->set_handed_disks(static_cast<uint32_t>(files->disks.size()));
    if (has_lock) {
      c->mutable_lock()->set_path(vm.lock_path());
      c->mutable_lock()->set_agent(agent_name);
      c->set_handed_lock(true);
      pass.push_back(files->lock.get());
    }
    auto created = conn->CallWithFds(create, kTakeOverCreateTimeoutMs, pass, nullptr);
    files = absl::InternalError("passed on");  // closes this process's copies
    if (!created.ok()) return failed(Annotate(created.status(), "build the VM in the new VMM"), false);
    auto attached = RemoteVm::Attach(std::move(*conn), *pid);
    if (!attached.ok()) return failed(Annotate(attached.status(), "attach to the new VMM"), false);
    next.set_vm(std::move(*attached));
  }
  result.times.prepare_ns = NowNs() - t_start;
  if (hooks.before_pause) hooks.before_pause(next.pid());

  // 2. The switch: the guest is paused from here until the new VMM resumes it.
  const int64_t t_pause = NowNs();
  if (absl::Status st = vm.Pause(); !st.ok()) {
    // A pause that failed part-way may have parked some vCPUs: resume is harmless either way.
    return failed(Annotate(st, "pause the guest in the old VMM"), true);
  }
  const int64_t t_paused = NowNs();
  auto state = vm.SaveState();
  if (!state.ok()) return failed(Annotate(state.status(), "save the guest's state"), true);
  const int64_t t_saved = NowNs();
  if (absl::Status st = next.vm().RestoreState(*state); !st.ok()) {
    next.Abandon();
    return failed(Annotate(st, "load the state into the new VMM"), true);
  }
  const int64_t t_restored = NowNs();
  if (has_lock) {
    // Both VMMs hold the one lock; the holder record now names the new one (one write).
    record_moved = true;
    if (absl::Status st = next.vm().TakeLock(); !st.ok()) {
      next.Abandon();  // the lock stays with the old VMM's description
      return failed(Annotate(st, "name the new VMM in the VM lock's record"), true);
    }
  }
  const int64_t t_locked = NowNs();
  if (hooks.before_resume) hooks.before_resume(next.pid());
  if (absl::Status st = next.vm().Start(); !st.ok()) {
    next.Abandon();  // killed before the old copy resumes: never two running guests
    return failed(Annotate(st, "resume the guest in the new VMM"), true);
  }
  const int64_t t_resumed = NowNs();
  result.times.pause_ns = t_paused - t_pause;
  result.times.save_ns = t_saved - t_paused;
  result.times.restore_ns = t_restored - t_saved;
  result.times.lock_ns = t_locked - t_restored;
  result.times.resume_ns = t_resumed - t_locked;
  result.times.downtime_ns = t_resumed - t_pause;

  // 3. The guest runs in the new VMM: hand it the VM's socket, end the old VMM.
  result.vm = next.Keep();
  if (absl::Status st = result.vm->ClaimSocket(socket); !st.ok()) {
    result.warning = absl::StrCat("the new VMM could not take the VM's socket (", st.message(),
                                  "): a restarted agent will not find it at ", socket);
  }
  if (absl::Status st = vm.Retire(); !st.ok()) {
    // Paused and replaced: it must not linger.
    if (result.old_pid > 0) kill(result.old_pid, SIGKILL);
    absl::StrAppend(&result.warning, result.warning.empty() ? "" : "; ", "the old VMM did not retire (",
                    st.message(), "): killed");
  }
  result.times.finish_ns = NowNs() - t_resumed;
  spdlog::info(
      "event=vmm_upgraded vm={} old_pid={} new_pid={} downtime_us={} pause_us={} save_us={} restore_us={} "
      "lock_us={} resume_us={} prepare_ms={}",
      name, result.old_pid, result.new_pid, result.times.downtime_ns / 1000, result.times.pause_ns / 1000,
      result.times.save_ns / 1000, result.times.restore_ns / 1000, result.times.lock_ns / 1000,
      result.times.resume_ns / 1000,
      result.times.prepare_ns / 1'000'000);
  return result;
}

}  // namespace ferry
