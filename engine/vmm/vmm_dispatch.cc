#include "engine/vmm/vmm_dispatch.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/vm/micro_vm.h"
#include "engine/vm/vm_spec_proto.h"
#include "engine/vmm/vmm_convert.h"
#include "engine/vmm/vmm_wire.h"

namespace ferry {

v1::VmmReply VmmDispatcher::Handle(const v1::VmmRequest& request, std::vector<int>* pass_fds,
                                   std::vector<UniqueFd> received_fds) {
  pass_fds->clear();
  v1::VmmReply reply;
  reply.set_version(kVmmProtocolVersion);
  reply.set_seq(request.seq());
  absl::Status st;
  if (request.version() != kVmmProtocolVersion) {
    st = absl::InvalidArgumentError(absl::StrCat("VMM protocol version ", request.version(),
                                                 " is not supported (this VMM speaks ", kVmmProtocolVersion, ")"));
  } else {
    st = Dispatch(request, reply, pass_fds, std::move(received_fds));
  }
  if (!st.ok()) pass_fds->clear();
  SetReplyStatus(st, reply);
  reply.set_run_state(vm_ ? RunStateToVmm(vm_->run_state()) : v1::VMM_RUN_STATE_NO_VM);
  return reply;
}

void VmmDispatcher::OnAgentGone() {
  // A disk mirror nobody drives any more must not keep the guest's writes from completing.
  if (vm_) (void)EndDiskMirror(*vm_);
  if (!vm_ || stop_requested_ || (!migration_tracking_ && !paused_by_migration_)) return;
  const std::string& name = vm_->spec().name;
  if (vm_->throttle_percent() > 0) (void)vm_->SetThrottle(0);
  if (migration_tracking_) (void)vm_->DisableDirtyTracking();
  migration_tracking_ = false;
  if (!paused_by_migration_ || vm_->run_state() != VmRunState::kPaused) {
    spdlog::warn("event=vmm_migration_abandoned vm={} action=none (the guest runs on)", name);
    return;
  }
  if (handover_committed_) {
    // The commit may have arrived: the guest may run on the destination. Never resume blindly.
    spdlog::warn("event=vmm_migration_abandoned vm={} action=kept_paused migration={} destination={} (the commit "
                 "went out; the next agent asks the destination)",
                 name, handover_.migration_id(), handover_.destination());
    return;
  }
  absl::Status st = lock_.RequireHeldToRun();
  if (st.ok()) st = vm_->Resume();
  if (st.ok()) paused_by_migration_ = false;
  spdlog::warn("event=vmm_migration_abandoned vm={} action=resumed error=\"{}\"", name, std::string(st.message()));
}

void VmmDispatcher::StopVm() {
  if (vm_) (void)vm_->Stop();
}

absl::Status VmmDispatcher::Create(const v1::VmmCreate& create, std::vector<UniqueFd> fds) {
  if (vm_) return absl::FailedPreconditionError("this VMM already runs a VM");
  const v1::VmmStartMode mode = create.mode();
  if (mode != v1::VMM_START_MODE_BOOT && mode != v1::VMM_START_MODE_RESTORE && mode != v1::VMM_START_MODE_TAKE_OVER) {
    return absl::InvalidArgumentError("create: mode must be boot, restore or take-over");
  }
  // Take-over: the memfd, then the handed disks, then the lock (VmmCreate.handed_*).
  const size_t expected_fds = mode == v1::VMM_START_MODE_TAKE_OVER ? 1 + create.handed_disks() + create.handed_lock() : 0;
  if (fds.size() != expected_fds || (expected_fds && !fds[0].valid())) {
    return absl::InvalidArgumentError(
        mode == v1::VMM_START_MODE_TAKE_OVER
            ? absl::StrCat("create: take-over needs ", expected_fds, " descriptors beside the request (guest memory, ",
                           create.handed_disks(), " disks", create.handed_lock() ? ", the lock" : "", "), got ", fds.size())
            : absl::StrCat("create: ", fds.size(), " descriptors beside a ",
                           mode == v1::VMM_START_MODE_BOOT ? "boot" : "restore", " request, which takes none"));
  }
  if (create.handed_lock() && !create.has_lock()) {
    return absl::InvalidArgumentError("create: a lock descriptor was handed over for a VM without a lock");
  }
  ASSIGN_OR_RETURN(VmSpec spec, VmSpecFromProto(create.spec()));
  spec.console_log_path = create.console_log_path();
  spec.image_path = create.image_path();
  if (create.has_lock()) {
    RETURN_IF_ERROR(lock_.Configure(create.lock(), spec.name));
    // A boot runs the VM: the lock first, so a VM another holder runs is never built here.
    if (mode == v1::VMM_START_MODE_BOOT) RETURN_IF_ERROR(lock_.Take());
    // A take-over holds it with its old VMM from here (one description): never released on the way.
    if (create.handed_lock()) RETURN_IF_ERROR(lock_.Adopt(std::move(fds.back())));
  }
  absl::StatusOr<std::unique_ptr<Vm>> vm;
  if (mode == v1::VMM_START_MODE_TAKE_OVER) {
    // The memfd is the running guest's RAM: mapped shared, never resized or written here.
    ASSIGN_OR_RETURN(auto memory, GuestMemory::WrapExisting(std::move(fds[0]), spec.memory_bytes));
    std::vector<UniqueFd> disks;
    for (uint32_t i = 0; i < create.handed_disks(); ++i) disks.push_back(std::move(fds[1 + i]));
    vm = CreateVmForTakeOver(spec, std::move(memory), std::move(disks));
  } else {
    vm = mode == v1::VMM_START_MODE_BOOT ? CreateVmForBoot(spec) : CreateVmForRestore(spec);
  }
  if (!vm.ok()) {
    lock_.Release();
    return vm.status();
  }
  vm_ = std::move(*vm);
  console_log_path_ = spec.console_log_path;
  if (mode == v1::VMM_START_MODE_RESTORE) arriving_migration_ = create.arriving_migration().substr(0, 128);
  spdlog::info("event=vmm_vm_created vm={} mode={} memory_mib={}", spec.name,
               mode == v1::VMM_START_MODE_BOOT      ? "boot"
               : mode == v1::VMM_START_MODE_RESTORE ? "restore"
                                                    : "take-over",
               spec.memory_bytes >> 20);
  return absl::OkStatus();
}

void VmmDispatcher::Describe(v1::VmmReply& reply) const {
  *reply.mutable_spec() = VmSpecToProto(vm_->spec());
  *reply.mutable_health() = GuestHealthToVmm(vm_->health());
  reply.set_throttle_percent(vm_->throttle_percent());
  reply.set_first_guest_entry_ns(vm_->first_guest_entry_ns());
  reply.set_console_log_path(console_log_path_);
  reply.set_pid(static_cast<int32_t>(getpid()));
  reply.set_memory_bytes(vm_->memory().size());
  reply.set_lock_path(lock_.path());
  reply.set_lock_held(lock_.held());
  if (ever_started_) reply.set_arrived_by_migration(arriving_migration_);
  // A successor agent settles a guest kept paused after a commit from this mark.
  if (handover_committed_ && vm_->run_state() == VmRunState::kPaused) *reply.mutable_handover() = handover_;
}

absl::Status VmmDispatcher::MarkHandover(const v1::VmmHandover& mark) {
  if (vm_->run_state() != VmRunState::kPaused) {
    return absl::FailedPreconditionError("handover_committed: the VM is not paused");
  }
  if (mark.migration_id().size() > 128 || mark.destination().size() > 1024 || mark.destination_name().size() > 1024) {
    return absl::InvalidArgumentError("handover: migration id or destination too long");
  }
  handover_committed_ = true;
  handover_ = mark;
  return absl::OkStatus();
}

absl::Status VmmDispatcher::Dispatch(const v1::VmmRequest& request, v1::VmmReply& reply, std::vector<int>* pass_fds,
                                     std::vector<UniqueFd> received_fds) {
  if (request.kind_case() == v1::VmmRequest::kCreate) return Create(request.create(), std::move(received_fds));
  if (request.kind_case() == v1::VmmRequest::KIND_NOT_SET) return absl::InvalidArgumentError("empty VMM request");
  if (!vm_) {
    if (request.kind_case() == v1::VmmRequest::kStop) {
      stop_requested_ = true;
      return absl::OkStatus();
    }
    return absl::FailedPreconditionError("this VMM has no VM yet (create first)");
  }
  switch (request.kind_case()) {
    case v1::VmmRequest::kDescribe:
      Describe(reply);
      return absl::OkStatus();
    case v1::VmmRequest::kMemory:
      reply.set_memory_bytes(vm_->memory().size());
      pass_fds->push_back(vm_->memory().fd());
      return absl::OkStatus();
    case v1::VmmRequest::kHandOverFiles: return HandOverFiles(reply, pass_fds);
    case v1::VmmRequest::kStart: {
      RETURN_IF_ERROR(lock_.RequireHeldToRun());
      absl::Status st = vm_->Start();
      if (st.ok()) ever_started_ = true;
      return st;
    }
    case v1::VmmRequest::kPause:
      RETURN_IF_ERROR(vm_->Pause());
      if (migration_tracking_) paused_by_migration_ = true;
      return absl::OkStatus();
    case v1::VmmRequest::kResume:
      RETURN_IF_ERROR(lock_.RequireHeldToRun());
      RETURN_IF_ERROR(vm_->Resume());
      paused_by_migration_ = false;
      handover_committed_ = false;  // the guest runs here: no commit is pending any more
      handover_.Clear();
      return absl::OkStatus();
    case v1::VmmRequest::kHandoverCommitted: return MarkHandover(v1::VmmHandover());
    case v1::VmmRequest::kHandover: return MarkHandover(request.handover());
    case v1::VmmRequest::kStop: {
      stop_requested_ = true;
      absl::Status st = vm_->Stop();
      lock_.Release();  // before the reply: whoever the agent lets take it next finds it free
      return st;
    }
    case v1::VmmRequest::kReleaseLock:
      if (vm_->run_state() == VmRunState::kRunning) {
        return absl::FailedPreconditionError("release_lock: the VM is running (pause it first)");
      }
      lock_.Release();
      return absl::OkStatus();
    case v1::VmmRequest::kTakeLock:
      if (!lock_.configured()) return absl::FailedPreconditionError("take_lock: this VM has no lock file");
      return lock_.Take();
    case v1::VmmRequest::kClaimSocket:
      if (!claim_socket_) return absl::FailedPreconditionError("claim_socket: this VMM cannot move its socket");
      lock_.SyncRecord();  // renamed in the upgrade's pause; the guest runs now
      return claim_socket_();
    case v1::VmmRequest::kRetire:
      // Only a paused copy may be retired: its successor resumed the guest from its saved state.
      if (vm_->run_state() != VmRunState::kPaused) {
        return absl::FailedPreconditionError(absl::StrCat("retire: the VM is ", VmRunStateName(vm_->run_state()),
                                                          ", not paused"));
      }
      stop_requested_ = true;
      retired_ = true;
      spdlog::info("event=vmm_retired vm={}", vm_->spec().name);
      return vm_->Stop();
    case v1::VmmRequest::kEnableDirtyTracking:
      RETURN_IF_ERROR(vm_->EnableDirtyTracking());
      migration_tracking_ = true;  // only a migration tracks dirty pages
      handover_committed_ = false;
      handover_.Clear();
      return absl::OkStatus();
    case v1::VmmRequest::kDisableDirtyTracking:
      RETURN_IF_ERROR(vm_->DisableDirtyTracking());
      migration_tracking_ = false;
      return absl::OkStatus();
    case v1::VmmRequest::kCollectDirty: {
      DirtyBitmap dirty(vm_->memory().num_pages());
      RETURN_IF_ERROR(vm_->CollectDirtyPages(dirty));
      reply.set_dirty_pages(dirty.num_pages());
      reply.mutable_dirty_words()->Add(dirty.words().begin(), dirty.words().end());
      return absl::OkStatus();
    }
    case v1::VmmRequest::kCollectDiskWrites: {
      DirtyBitmap blocks(request.collect_disk_writes().blocks());
      RETURN_IF_ERROR(CollectDiskWrites(*vm_, request.collect_disk_writes().disk(), blocks));
      reply.set_disk_write_blocks(blocks.num_pages());
      reply.mutable_disk_write_words()->Add(blocks.words().begin(), blocks.words().end());
      return absl::OkStatus();
    }
    case v1::VmmRequest::kDiskMirror: return DiskMirror(request.disk_mirror(), reply);
    case v1::VmmRequest::kSaveState: {
      ASSIGN_OR_RETURN(*reply.mutable_state(), vm_->SaveState());
      return absl::OkStatus();
    }
    case v1::VmmRequest::kRestoreState: return vm_->RestoreState(request.restore_state());
    case v1::VmmRequest::kSetThrottle:
      if (request.set_throttle() > 99) {
        return absl::InvalidArgumentError(absl::StrCat("throttle ", request.set_throttle(), "% is above 99%"));
      }
      return vm_->SetThrottle(request.set_throttle());
    default: return absl::InvalidArgumentError(absl::StrCat("unknown VMM request kind ", request.kind_case()));
  }
}

absl::Status VmmDispatcher::DiskMirror(const v1::VmmDiskMirror& m, v1::VmmReply& reply) {
  switch (m.op()) {
    case v1::VMM_DISK_MIRROR_OP_START: return StartDiskMirror(*vm_);
    case v1::VMM_DISK_MIRROR_OP_END: return EndDiskMirror(*vm_);
    case v1::VMM_DISK_MIRROR_OP_STEP: {
      // Bounded: the socket serves one request at a time.
      const auto wait = std::chrono::milliseconds(std::min<uint32_t>(m.wait_ms(), 50));
      DirtyBitmap blocks(m.blocks());
      ASSIGN_OR_RETURN(uint64_t cut, DiskMirrorStep(*vm_, m.disk(), m.release_through(), wait, blocks));
      reply.set_disk_mirror_cut(cut);
      reply.set_disk_write_blocks(blocks.num_pages());
      reply.mutable_disk_write_words()->Add(blocks.words().begin(), blocks.words().end());
      return absl::OkStatus();
    }
    default: return absl::InvalidArgumentError(absl::StrCat("disk_mirror: unknown op ", static_cast<int>(m.op())));
  }
}

absl::Status VmmDispatcher::HandOverFiles(v1::VmmReply& reply, std::vector<int>* pass_fds) {
  // A VM that runs without its lock (a restore awaiting take_lock) has none to hand over.
  RETURN_IF_ERROR(lock_.RequireHeldToRun());
  const std::vector<int> disks = DiskDescriptors(*vm_);
  pass_fds->insert(pass_fds->end(), disks.begin(), disks.end());
  reply.set_handed_disks(static_cast<uint32_t>(disks.size()));
  if (lock_.held()) pass_fds->push_back(lock_.fd());
  reply.set_handed_lock(lock_.held());
  spdlog::info("event=vmm_files_handed_over vm={} disks={} lock={}", vm_->spec().name, disks.size(), lock_.held());
  return absl::OkStatus();
}

}  // namespace ferry
