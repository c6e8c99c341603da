#include "engine/agent/remote_vm.h"

#include <poll.h>
#include <sys/wait.h>

#include <chrono>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/vm/vm_spec_proto.h"
#include "engine/vmm/vmm_convert.h"

namespace ferry {
namespace {

constexpr int kQueryTimeoutMs = 5'000;        // describe
constexpr int kOperationTimeoutMs = 120'000;  // start, pause, save: a nested-KVM host can be slow

v1::VmmRequest Verb(void (v1::VmmRequest::*set)(bool)) {
  v1::VmmRequest r;
  (r.*set)(true);
  return r;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RemoteVm>> RemoteVm::Attach(VmmConnection conn, pid_t child_pid) {
  std::unique_ptr<RemoteVm> vm(new RemoteVm(std::move(conn), child_pid));
  ASSIGN_OR_RETURN(v1::VmmReply described, vm->Call(Verb(&v1::VmmRequest::set_describe), kQueryTimeoutMs));
  ASSIGN_OR_RETURN(vm->spec_, VmSpecFromProto(described.spec()));
  vm->console_log_path_ = described.console_log_path();
  vm->lock_path_ = described.lock_path();
  vm->spec_.console_log_path = vm->console_log_path_;
  vm->vmm_pid_ = described.pid();
  vm->throttle_ = described.throttle_percent();
  vm->ever_started_ = described.run_state() == v1::VMM_RUN_STATE_RUNNING ||
                      described.run_state() == v1::VMM_RUN_STATE_PAUSED;
  vm->arrived_by_migration_ = described.arrived_by_migration();
  if (described.has_handover() && described.run_state() == v1::VMM_RUN_STATE_PAUSED) {
    vm->adopted_handover_ = described.handover();
  }
  UniqueFd memfd;
  ASSIGN_OR_RETURN(v1::VmmReply mem, vm->Call(Verb(&v1::VmmRequest::set_memory), kQueryTimeoutMs, &memfd));
  if (!memfd.valid()) return absl::DataLossError("the VMM sent no guest memory descriptor");
  if (mem.memory_bytes() != vm->spec_.memory_bytes) {
    return absl::DataLossError(absl::StrCat("the VMM's guest memory is ", mem.memory_bytes(), " bytes, its spec says ",
                                            vm->spec_.memory_bytes));
  }
  ASSIGN_OR_RETURN(vm->memory_, GuestMemory::WrapExisting(std::move(memfd), mem.memory_bytes()));
  vm->watcher_ = std::thread([raw = vm.get()] { raw->Watch(); });
  return vm;
}

RemoteVm::~RemoteVm() {
  closing_ = true;
  if (watcher_.joinable()) watcher_.join();
  const bool never_started = !ever_started_.load();
  {
    std::lock_guard lock(mu_);
    conn_ = VmmConnection::Closed();
  }
  // A VMM whose VM never ran ends with its connection: reap it rather than leave a zombie.
  if (never_started && child_pid_ > 0 && !child_reaped_) (void)ReapChild(5'000);
}

absl::StatusOr<v1::VmmReply> RemoteVm::Call(v1::VmmRequest request, int timeout_ms, UniqueFd* fd) const {
  std::vector<UniqueFd> fds;
  auto reply = CallForFds(std::move(request), timeout_ms, fd ? &fds : nullptr);
  if (fd && !fds.empty()) *fd = std::move(fds.front());  // the rest close here
  return reply;
}

absl::StatusOr<v1::VmmReply> RemoteVm::CallForFds(v1::VmmRequest request, int timeout_ms,
                                                  std::vector<UniqueFd>* fds) const {
  if (lost_) return absl::UnavailableError(absl::StrCat("VM '", spec_.name, "': ", failure()));
  std::lock_guard lock(mu_);
  auto reply = conn_.CallWithFds(std::move(request), timeout_ms, {}, fds);
  if (!reply.ok()) {
    const auto code = reply.status().code();
    if (code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded ||
        code == absl::StatusCode::kDataLoss || code == absl::StatusCode::kInternal) {
      if (!stop_sent_) MarkLost(absl::StrCat("its VMM process stopped answering: ", reply.status().message()));
    }
    return reply.status();
  }
  run_state_ = RunStateFromVmm(reply->run_state());
  if (reply->has_health()) last_health_ = GuestHealthFromVmm(reply->health());
  return reply;
}

VmRunState RemoteVm::run_state() const { return lost_ ? VmRunState::kStopped : run_state_.load(); }

absl::Status RemoteVm::Start() {
  RETURN_IF_ERROR(Call(Verb(&v1::VmmRequest::set_start), kOperationTimeoutMs).status());
  ever_started_ = true;
  return absl::OkStatus();
}
absl::Status RemoteVm::Pause() { return Call(Verb(&v1::VmmRequest::set_pause), kOperationTimeoutMs).status(); }
absl::Status RemoteVm::Resume() {
  RETURN_IF_ERROR(Call(Verb(&v1::VmmRequest::set_resume), kOperationTimeoutMs).status());
  ever_started_ = true;
  return absl::OkStatus();
}

absl::Status RemoteVm::Stop() {
  if (lost_ || (stop_sent_ && run_state_ == VmRunState::kStopped)) return absl::OkStatus();  // nothing runs
  stop_sent_ = true;
  auto reply = Call(Verb(&v1::VmmRequest::set_stop), kOperationTimeoutMs);
  if (!reply.ok()) return reply.status();
  run_state_ = VmRunState::kStopped;
  return absl::OkStatus();
}

absl::Status RemoteVm::ReleaseLock() {
  return Call(Verb(&v1::VmmRequest::set_release_lock), kOperationTimeoutMs).status();
}
absl::Status RemoteVm::TakeLock() {
  return Call(Verb(&v1::VmmRequest::set_take_lock), kOperationTimeoutMs).status();
}

absl::Status RemoteVm::ClaimSocket(const std::string& final_path) {
  RETURN_IF_ERROR(Call(Verb(&v1::VmmRequest::set_claim_socket), kQueryTimeoutMs).status());
  std::lock_guard lock(mu_);
  claimed_socket_path_ = final_path;
  return absl::OkStatus();
}

std::string RemoteVm::socket_path() const {
  std::lock_guard lock(mu_);
  return claimed_socket_path_.empty() ? conn_.socket_path() : claimed_socket_path_;
}

absl::Status RemoteVm::Retire() {
  if (lost_) return absl::UnavailableError(absl::StrCat("VM '", spec_.name, "': ", failure()));
  stop_sent_ = true;
  auto reply = Call(Verb(&v1::VmmRequest::set_retire), kOperationTimeoutMs);
  if (!reply.ok()) return reply.status();
  run_state_ = VmRunState::kStopped;
  return absl::OkStatus();
}

absl::StatusOr<RemoteVm::HandedFiles> RemoteVm::HandOverFiles() {
  std::vector<UniqueFd> fds;
  ASSIGN_OR_RETURN(v1::VmmReply reply, CallForFds(Verb(&v1::VmmRequest::set_hand_over_files), kQueryTimeoutMs, &fds));
  const size_t expected = reply.handed_disks() + (reply.handed_lock() ? 1 : 0);
  if (fds.size() != expected) {
    return absl::DataLossError(absl::StrCat("hand_over_files: the VMM sent ", fds.size(), " descriptors, its reply names ",
                                            expected));
  }
  HandedFiles files;
  if (reply.handed_lock()) {
    files.lock = std::move(fds.back());
    fds.pop_back();
  }
  files.disks = std::move(fds);
  return files;
}

void RemoteVm::SetHandoverTarget(v1::VmmHandover target) {
  std::lock_guard lock(mu_);
  handover_target_ = std::move(target);
}

absl::Status RemoteVm::MarkHandoverCommitted() {
  v1::VmmRequest r;
  {
    std::lock_guard lock(mu_);
    *r.mutable_handover() = handover_target_;
  }
  absl::Status st = Call(std::move(r), kOperationTimeoutMs).status();
  // A VMM older than the mark with its target reads an empty request: the bare mark still keeps
  // the guest paused (a successor then has nothing to ask; docs/vmm_process.md).
  if (absl::IsInvalidArgument(st)) st = Call(Verb(&v1::VmmRequest::set_handover_committed), kOperationTimeoutMs).status();
  return st;
}

absl::Status RemoteVm::EnableDirtyTracking() {
  return Call(Verb(&v1::VmmRequest::set_enable_dirty_tracking), kOperationTimeoutMs).status();
}
absl::Status RemoteVm::DisableDirtyTracking() {
  return Call(Verb(&v1::VmmRequest::set_disable_dirty_tracking), kOperationTimeoutMs).status();
}

absl::Status RemoteVm::CollectDirtyPages(DirtyBitmap& out) {
  ASSIGN_OR_RETURN(v1::VmmReply reply, Call(Verb(&v1::VmmRequest::set_collect_dirty), kOperationTimeoutMs));
  const uint64_t words = (out.num_pages() + 63) / 64;
  if (reply.dirty_pages() != out.num_pages() || static_cast<uint64_t>(reply.dirty_words_size()) != words) {
    return absl::DataLossError(absl::StrCat("the VMM's dirty bitmap covers ", reply.dirty_pages(), " pages in ",
                                            reply.dirty_words_size(), " words; expected ", out.num_pages()));
  }
  out.OrWords(0, std::span<const uint64_t>(reply.dirty_words().data(), words));
  return absl::OkStatus();
}

absl::Status RemoteVm::CollectDiskWrites(uint32_t disk, DirtyBitmap& out) {
  v1::VmmRequest request;
  request.mutable_collect_disk_writes()->set_disk(disk);
  request.mutable_collect_disk_writes()->set_blocks(out.num_pages());
  ASSIGN_OR_RETURN(v1::VmmReply reply, Call(std::move(request), kOperationTimeoutMs));
  const uint64_t words = (out.num_pages() + 63) / 64;
  if (reply.disk_write_blocks() != out.num_pages() || static_cast<uint64_t>(reply.disk_write_words_size()) != words) {
    return absl::DataLossError(absl::StrCat("the VMM's write log of disk ", disk, " covers ", reply.disk_write_blocks(),
                                            " blocks; expected ", out.num_pages()));
  }
  out.OrWords(0, std::span<const uint64_t>(reply.disk_write_words().data(), words));
  return absl::OkStatus();
}

absl::Status RemoteVm::StartDiskMirror() {
  v1::VmmRequest request;
  request.mutable_disk_mirror()->set_op(v1::VMM_DISK_MIRROR_OP_START);
  return Call(std::move(request), kOperationTimeoutMs).status();
}

absl::StatusOr<uint64_t> RemoteVm::DiskMirrorStep(uint32_t disk, uint64_t release_through, uint32_t wait_ms,
                                                  DirtyBitmap& out) {
  v1::VmmRequest request;
  v1::VmmDiskMirror& m = *request.mutable_disk_mirror();
  m.set_op(v1::VMM_DISK_MIRROR_OP_STEP);
  m.set_disk(disk);
  m.set_blocks(out.num_pages());
  m.set_release_through(release_through);
  m.set_wait_ms(wait_ms);
  ASSIGN_OR_RETURN(v1::VmmReply reply, Call(std::move(request), kOperationTimeoutMs));
  const uint64_t words = (out.num_pages() + 63) / 64;
  if (reply.disk_write_blocks() != out.num_pages() || static_cast<uint64_t>(reply.disk_write_words_size()) != words) {
    return absl::DataLossError(absl::StrCat("the VMM's mirror cut of disk ", disk, " covers ", reply.disk_write_blocks(),
                                            " blocks; expected ", out.num_pages()));
  }
  out.OrWords(0, std::span<const uint64_t>(reply.disk_write_words().data(), words));
  return reply.disk_mirror_cut();
}

absl::Status RemoteVm::EndDiskMirror() {
  v1::VmmRequest request;
  request.mutable_disk_mirror()->set_op(v1::VMM_DISK_MIRROR_OP_END);
  return Call(std::move(request), kOperationTimeoutMs).status();
}

absl::StatusOr<v1::VmState> RemoteVm::SaveState() {
  ASSIGN_OR_RETURN(v1::VmmReply reply, Call(Verb(&v1::VmmRequest::set_save_state), kOperationTimeoutMs));
  return std::move(*reply.mutable_state());
}

absl::Status RemoteVm::RestoreState(const v1::VmState& state) {
  v1::VmmRequest r;
  *r.mutable_restore_state() = state;
  return Call(std::move(r), kOperationTimeoutMs).status();
}

absl::Status RemoteVm::SetThrottle(uint32_t percent) {
  v1::VmmRequest r;
  r.set_set_throttle(percent);
  RETURN_IF_ERROR(Call(std::move(r), kOperationTimeoutMs).status());
  throttle_ = percent;
  return absl::OkStatus();
}

int64_t RemoteVm::first_guest_entry_ns() const {
  auto reply = Call(Verb(&v1::VmmRequest::set_describe), kQueryTimeoutMs);
  return reply.ok() ? reply->first_guest_entry_ns() : 0;
}

GuestHealth RemoteVm::health() const {
  (void)Call(Verb(&v1::VmmRequest::set_describe), kQueryTimeoutMs);  // refreshes last_health_
  std::lock_guard lock(mu_);
  return last_health_;
}

std::string RemoteVm::failure() const {
  std::lock_guard lock(lost_mu_);
  return failure_;
}

void RemoteVm::MarkLost(const std::string& reason) const {
  {
    std::lock_guard lock(lost_mu_);
    if (!failure_.empty()) return;
    failure_ = reason;
  }
  lost_ = true;
  spdlog::error("event=vmm_died vm={} pid={} reason=\"{}\"", spec_.name, vmm_pid_, reason);
}

std::string RemoteVm::ReapChild(int wait_ms) const {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  for (;;) {
    int status = 0;
    pid_t r = waitpid(child_pid_, &status, WNOHANG);
    if (r == child_pid_) {
      child_reaped_ = true;
      if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
      return absl::StrCat("exited with status ", WEXITSTATUS(status));
    }
    if (r < 0 || std::chrono::steady_clock::now() > deadline) return "";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void RemoteVm::Watch() {
  int fd;
  {
    std::lock_guard lock(mu_);
    fd = conn_.fd();
  }
  while (!closing_) {
    pollfd p{fd, POLLRDHUP, 0};
    if (poll(&p, 1, 250) <= 0) continue;
    if (!(p.revents & (POLLRDHUP | POLLHUP | POLLERR))) continue;
    std::string how = child_pid_ > 0 ? ReapChild(5'000) : "";
    if (stop_sent_) {
      run_state_ = VmRunState::kStopped;
      return;
    }
    MarkLost(absl::StrCat("its VMM process (pid ", vmm_pid_, ") went away", how.empty() ? "" : ": ", how));
    return;
  }
}

std::string VmProcessFailure(const Vm& vm) {
  const auto* remote = dynamic_cast<const RemoteVm*>(&vm);
  return remote ? remote->failure() : "";
}

}  // namespace ferry
