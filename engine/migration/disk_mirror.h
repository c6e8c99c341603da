#pragma once
// A storage migration's synchronous mode ("mirror", docs/storage_migration.md): once the bulk
// copy is done, every write the VM's virtio-blk devices perform reaches the destination before
// the guest sees it complete. The VMM holds each write's completion; this mirror's thread
// repeatedly asks it for a cut (the held writes' blocks, numbered), sends those blocks with the
// cut's number, waits for the destination's DiskMirrorAck, and lets the VMM release that cut at
// its next step. So the guest never sees a write complete whose data the destination has not
// written, and the pause moves only the writes that were on io_uring when the guest stopped.
//
// Thread states: idle -> mirroring (Start) -> stopped (Stop, or an error: the destination's
// refusal, a lost link, an ack not within the timeout, a cancel). End() shows every held
// completion to the guest; the caller calls it on every path out (rollback or final copy sent).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "engine/memory/dirty_bitmap.h"
#include "engine/migration/disk_copy.h"
#include "engine/migration/migration_channel.h"

namespace ferry {

// The VMM's side of the mirror (StartDiskMirror, DiskMirrorStep, EndDiskMirror of
// engine/vm/micro_vm.h, or their VMM-socket requests).
struct DiskMirrorHooks {
  std::function<absl::Status()> start;
  // Releases cuts up to `release_through`, waits up to `wait_ms` for a held write, cuts and ORs
  // the cut's blocks into `out`; returns the cut's number.
  std::function<absl::StatusOr<uint64_t>(uint32_t disk, uint64_t release_through, uint32_t wait_ms, DirtyBitmap& out)>
      step;
  std::function<absl::Status()> end;
};

struct DiskMirrorCounters {
  uint64_t cuts = 0;  // cuts with blocks, acknowledged
  DiskCopyCounters copy;
};

class DiskMirror {
 public:
  // `copy` reads the source's files, `channel` carries blocks out and acks back (nobody else may
  // Receive on it while the mirror runs; Sends must be serialized with other senders').
  DiskMirror(DiskCopySource& copy, MigrationChannel& channel, DiskMirrorHooks hooks,
             std::chrono::milliseconds ack_timeout);
  ~DiskMirror();
  DiskMirror(const DiskMirror&) = delete;
  DiskMirror& operator=(const DiskMirror&) = delete;

  // Tells the VMM to hold write completions, then starts the thread.
  absl::Status Start();
  // Non-blocking: the thread ended on an error (see Stop for which).
  bool failed() const { return failed_.load(); }
  // Ends the thread after its current cut and returns its error (OK: every cut it sent was
  // acknowledged). The destination's refusal, if it sent one, is in the message.
  absl::Status Stop();
  // Shows every held completion to the guest (the VMM stops holding them). Idempotent.
  absl::Status End();
  // After Stop.
  DiskMirrorCounters counters() const;

 private:
  void Loop();
  absl::Status Cut(uint32_t disk, uint32_t wait_ms, bool& sent);
  absl::Status AwaitAck(uint32_t disk, uint64_t cut);
  void Supervise();

  DiskCopySource& copy_;
  MigrationChannel& channel_;
  DiskMirrorHooks hooks_;
  const std::chrono::milliseconds ack_timeout_;
  std::vector<uint64_t> acked_;  // per disk: the last cut the destination acknowledged
  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
  std::atomic<int64_t> ack_wait_since_ns_{0};  // 0: not waiting
  std::atomic<bool> ack_timed_out_{false};
  bool started_ = false;
  bool ended_ = false;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  bool loop_done_ ABSL_GUARDED_BY(mu_) = false;
  DiskMirrorCounters counters_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
  std::thread supervisor_;  // breaks the link when an ack is overdue
};

}  // namespace ferry
