#include "engine/migration/disk_mirror.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/base/clock.h"
#include "engine/base/status.h"

namespace ferry {
namespace {

// How long one VMM step waits for a held write when nothing is waiting: the mirror's idle poll.
constexpr uint32_t kIdleWaitMs = 5;

}  // namespace

DiskMirror::DiskMirror(DiskCopySource& copy, MigrationChannel& channel, DiskMirrorHooks hooks,
                       std::chrono::milliseconds ack_timeout)
    : copy_(copy), channel_(channel), hooks_(std::move(hooks)), ack_timeout_(ack_timeout),
      acked_(copy.disk_count(), 0) {}

DiskMirror::~DiskMirror() {
  (void)Stop();
  (void)End();  // never leave the guest's writes waiting
}

absl::Status DiskMirror::Start() {
  if (started_) return absl::FailedPreconditionError("the disk mirror was started already");
  if (!hooks_.start || !hooks_.step || !hooks_.end) return absl::InternalError("a disk mirror without the VMM's hooks");
  RETURN_IF_ERROR(hooks_.start());
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
  supervisor_ = std::thread([this] { Supervise(); });
  return absl::OkStatus();
}

absl::Status DiskMirror::Stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  if (supervisor_.joinable()) supervisor_.join();
  std::lock_guard lock(mu_);
  return error_;
}

absl::Status DiskMirror::End() {
  if (!started_ || ended_) return absl::OkStatus();
  ended_ = true;
  return hooks_.end();
}

DiskMirrorCounters DiskMirror::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

void DiskMirror::Loop() {
  absl::Status st;
  const uint32_t disks = copy_.disk_count();
  const uint32_t idle_wait = std::max<uint32_t>(1, kIdleWaitMs / std::max<uint32_t>(1, disks));
  while (st.ok() && !stop_.load()) {
    bool busy = false;
    for (uint32_t d = 0; d < disks && st.ok(); ++d) {
      bool sent = false;
      st = Cut(d, busy ? 0 : idle_wait, sent);
      busy |= sent;
    }
  }
  std::lock_guard lock(mu_);
  if (!st.ok()) {
    error_ = st;
    failed_.store(true);
  }
  loop_done_ = true;
  cv_.notify_all();
}

absl::Status DiskMirror::Cut(uint32_t disk, uint32_t wait_ms, bool& sent) {
  DirtyBitmap blocks(copy_.disk_blocks(disk));
  auto cut = hooks_.step(disk, acked_[disk], wait_ms, blocks);
  if (!cut.ok()) {
    return absl::Status(cut.status().code(), absl::StrCat("disk mirror: the VMM's cut of disk ", disk, ": ",
                                                          cut.status().message()));
  }
  // No block: no completion is held in this cut (a held completion's write is in the log).
  if (blocks.Count() == 0) {
    acked_[disk] = *cut;
    return absl::OkStatus();
  }
  DiskCopyCounters c;
  absl::Status st = copy_.SendMirrorCut(channel_, disk, blocks, *cut, c);
  if (!st.ok() && !absl::IsCancelled(st)) {
    return absl::Status(st.code(), absl::StrCat("lost the destination while mirroring disk writes: ", st.message()));
  }
  RETURN_IF_ERROR(st);
  RETURN_IF_ERROR(AwaitAck(disk, *cut));
  acked_[disk] = *cut;  // released at this disk's next step
  sent = true;
  std::lock_guard lock(mu_);
  ++counters_.cuts;
  counters_.copy.blocks += c.blocks;
  counters_.copy.zero_blocks += c.zero_blocks;
  counters_.copy.data_bytes += c.data_bytes;
  counters_.copy.wire_bytes += c.wire_bytes;
  return absl::OkStatus();
}

absl::Status DiskMirror::AwaitAck(uint32_t disk, uint64_t cut) {
  v1::PeerReply reply;
  ack_wait_since_ns_.store(MonotonicNanos());
  absl::Status st = channel_.Receive(reply);
  ack_wait_since_ns_.store(0);
  if (!st.ok()) {
    if (ack_timed_out_.load()) {
      return absl::DeadlineExceededError(absl::StrCat("the destination did not acknowledge mirrored disk writes within ",
                                                      ack_timeout_.count(), " ms"));
    }
    return absl::Status(st.code(), absl::StrCat("lost the destination while mirroring disk writes: ", st.message()));
  }
  if (reply.has_error()) {
    return absl::AbortedError(absl::StrCat("destination refused: ", v1::PeerErrorCode_Name(reply.error().code()), ": ",
                                           reply.error().message()));
  }
  if (!reply.has_disk_mirror_ack() || reply.disk_mirror_ack().disk() != disk || reply.disk_mirror_ack().cut() != cut) {
    return absl::InternalError(absl::StrCat("the destination answered mirror cut ", cut, " of disk ", disk,
                                            " with something else (reply case ", static_cast<int>(reply.body_case()),
                                            ")"));
  }
  return absl::OkStatus();
}

void DiskMirror::Supervise() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return loop_done_; })) {
    const int64_t since = ack_wait_since_ns_.load();
    if (since != 0 && MonotonicNanos() - since > std::chrono::nanoseconds(ack_timeout_).count()) {
      ack_timed_out_.store(true);
      channel_.Abort();  // the loop's Receive returns; it reports the timeout
      return;
    }
  }
}

}  // namespace ferry
