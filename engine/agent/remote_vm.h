#pragma once
// A VM that runs in its own ferry-vmm process (docs/vmm_process.md): every Vm call is one request
// on the VMM's socket. Guest memory is the VMM's memfd mapped here, so the migration data path
// reads and writes it directly. A VMM that goes away is noticed (hang-up, or its exit when this
// agent spawned it) and the VM reported as failed from then on.

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "engine/vm/vm.h"
#include "engine/vmm/vmm_client.h"

namespace ferry {

class RemoteVm : public Vm {
 public:
  // Asks the VMM for its spec, run state and memfd, and maps its memory. `child_pid` > 0 when this
  // agent spawned the VMM (its exit is then reaped here).
  static absl::StatusOr<std::unique_ptr<RemoteVm>> Attach(VmmConnection conn, pid_t child_pid = -1);
  // Disconnects. The VMM keeps running its VM (one that never started ends with the connection).
  ~RemoteVm() override;

  const VmSpec& spec() const override { return spec_; }
  GuestMemory& memory() override { return *memory_; }
  VmRunState run_state() const override;

  absl::Status Start() override;
  absl::Status Pause() override;
  absl::Status Resume() override;
  absl::Status Stop() override;
  // Sends the handover mark with the target set by SetHandoverTarget (a VMM whose agent dies
  // then keeps the guest paused, and tells the next agent where to ask).
  absl::Status MarkHandoverCommitted() override;
  absl::Status EnableDirtyTracking() override;
  absl::Status DisableDirtyTracking() override;
  absl::Status CollectDirtyPages(DirtyBitmap& out) override;
  // A storage migration: the blocks file disk `disk`'s device wrote (CollectDiskWrites in the VMM).
  absl::Status CollectDiskWrites(uint32_t disk, DirtyBitmap& out);
  // A storage migration's synchronous mirror (DiskMirrorStep etc. of engine/vm/micro_vm.h, in the VMM).
  absl::Status StartDiskMirror();
  absl::StatusOr<uint64_t> DiskMirrorStep(uint32_t disk, uint64_t release_through, uint32_t wait_ms, DirtyBitmap& out);
  absl::Status EndDiskMirror();
  absl::StatusOr<v1::VmState> SaveState() override;
  absl::Status RestoreState(const v1::VmState& state) override;
  absl::Status SetThrottle(uint32_t percent) override;
  uint32_t throttle_percent() const override { return throttle_.load(); }
  int64_t first_guest_entry_ns() const override;
  GuestHealth health() const override;

  // The VM's datastore lock, held by the VMM process (docs/vmm_process.md "The VM lock"): let go
  // after a final copy (refused while the VM runs), taken before a resume (refused naming the
  // holder). A migration's commit and a same-host VMM upgrade pass the lock with these two.
  absl::Status ReleaseLock();
  absl::Status TakeLock();
  // Where the coming migration's commit goes (its id, the destination's address and certificate
  // name): the agent sets it before the migration runs; MarkHandoverCommitted passes it on.
  void SetHandoverTarget(v1::VmmHandover target);
  // The handover mark the VMM reported when this agent attached: its guest was kept paused after a
  // commit went out under a previous agent (docs/vmm_process.md "Adopting a guest paused after a
  // commit"). nullopt: no such mark.
  const std::optional<v1::VmmHandover>& adopted_handover() const { return adopted_handover_; }
  // The migration the VM arrived by, as its VMM reported it when this agent attached ("" if none).
  const std::string& arrived_by_migration() const { return arrived_by_migration_; }

  // The VM's lock file as the VMM was created with it; "" for a VM without one.
  const std::string& lock_path() const { return lock_path_; }

  // VMM upgrade (engine/agent/vmm_upgrade.h). ClaimSocket: a take-over VMM moves to the VM's
  // socket path. Retire: the paused old VMM stops its copy and exits, leaving that path to its
  // successor; its going away is then no failure.
  // `final_path` is the VM's socket path the VMM moves to (socket_path() from then on).
  absl::Status ClaimSocket(const std::string& final_path);
  absl::Status Retire();
  // VMM upgrade: the VMM's open file disks (VmSpec order) and its lock's description, for its
  // successor's take-over create. Pass them on and close them at once: while this process holds
  // the lock's description, the lock would outlive the VMM.
  struct HandedFiles {
    std::vector<UniqueFd> disks;
    UniqueFd lock;  // invalid: the VM has no lock
  };
  absl::StatusOr<HandedFiles> HandOverFiles();
  // Where the VMM's socket is (where this agent connected, or where it moved by ClaimSocket).
  std::string socket_path() const;

  // Why the VMM is gone; "" while it serves (or after it stopped as asked).
  std::string failure() const;
  pid_t vmm_pid() const { return vmm_pid_; }
  const std::string& console_log_path() const { return console_log_path_; }

 private:
  RemoteVm(VmmConnection conn, pid_t child_pid) : conn_(std::move(conn)), child_pid_(child_pid) {}
  // One exchange; keeps the run state the VMM reports; a broken connection makes the VM failed.
  absl::StatusOr<v1::VmmReply> Call(v1::VmmRequest request, int timeout_ms, UniqueFd* fd = nullptr) const;
  // The same, keeping every descriptor beside the reply.
  absl::StatusOr<v1::VmmReply> CallForFds(v1::VmmRequest request, int timeout_ms, std::vector<UniqueFd>* fds) const;
  void Watch();
  void MarkLost(const std::string& reason) const;
  std::string ReapChild(int wait_ms) const;

  mutable std::mutex mu_;  // one request at a time
  mutable VmmConnection conn_ ABSL_GUARDED_BY(mu_);
  mutable GuestHealth last_health_ ABSL_GUARDED_BY(mu_);
  mutable std::mutex lost_mu_;
  mutable std::string failure_ ABSL_GUARDED_BY(lost_mu_);
  mutable std::atomic<bool> lost_{false};
  mutable std::atomic<VmRunState> run_state_{VmRunState::kCreated};
  mutable std::atomic<bool> child_reaped_{false};
  std::atomic<bool> stop_sent_{false};
  std::atomic<bool> ever_started_{false};
  std::atomic<uint32_t> throttle_{0};
  std::atomic<bool> closing_{false};
  VmSpec spec_;
  std::string console_log_path_;
  std::string lock_path_;
  std::optional<v1::VmmHandover> adopted_handover_;
  std::string arrived_by_migration_;
  v1::VmmHandover handover_target_ ABSL_GUARDED_BY(mu_);
  std::string claimed_socket_path_ ABSL_GUARDED_BY(mu_);  // "" = the connection's own
  std::unique_ptr<GuestMemory> memory_;
  pid_t child_pid_;
  pid_t vmm_pid_ = -1;
  std::thread watcher_;
};

// The failure of a VM in a VMM process that went away; "" for any other VM.
std::string VmProcessFailure(const Vm& vm);

}  // namespace ferry
