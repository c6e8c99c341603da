#pragma once
// Which pages of a host mapping were written, from the kernel: userfaultfd write-protect in async
// mode read-and-re-protected atomically with PAGEMAP_SCAN (Linux 6.7+); else userfaultfd
// write-protect in synchronous mode (shared memory since 5.19, so Debian 12's 6.1): a thread
// records each first write of a page and lifts its protection; else soft-dirty bits
// (/proc/self/clear_refs + /proc/self/pagemap). Only writes through this mapping are seen: a
// write to the memfd by another mapping or by pwrite() is not.

#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/base/unique_fd.h"
#include "engine/memory/dirty_bitmap.h"

namespace ferry {

class PageWriteTracker {
 public:
  enum class Mechanism { kUffdWpAsync = 1, kSoftDirty = 2, kUffdWpSync = 3 };

  // Unavailable when neither mechanism works on this kernel.
  static absl::StatusOr<std::unique_ptr<PageWriteTracker>> Create(uint8_t* base, uint64_t bytes);
  // That mechanism or Unavailable (tests force the soft-dirty path that older kernels take).
  static absl::StatusOr<std::unique_ptr<PageWriteTracker>> CreateWith(Mechanism m, uint8_t* base, uint64_t bytes);

  // Soft-dirty bits are read and then cleared, process-wide: a write between the two would be
  // lost. Whoever writes memory that a soft-dirty tracker watches holds this gate shared (a
  // reader lock) while writing; the read-and-clear holds it exclusively. Unused by userfaultfd.
  static absl::Mutex& WriterGate();
  bool writers_need_gate() const { return mechanism_ == Mechanism::kSoftDirty; }
  ~PageWriteTracker();
  PageWriteTracker(const PageWriteTracker&) = delete;
  PageWriteTracker& operator=(const PageWriteTracker&) = delete;

  Mechanism mechanism() const { return mechanism_; }
  const char* mechanism_name() const;
  // Forgets earlier writes: only writes from now on are collected.
  absl::Status Start();
  // ORs the pages written since Start() or the last Collect() into `out`, and forgets them.
  absl::Status Collect(DirtyBitmap& out);
  absl::Status Stop();

 private:
  PageWriteTracker(Mechanism m, uint8_t* base, uint64_t bytes, UniqueFd uffd, UniqueFd pagemap);
  absl::Status CollectUffd(DirtyBitmap& out);
  absl::Status CollectSoftDirty(DirtyBitmap& out);
  absl::Status HarvestSoftDirtyLocked();  // soft-dirty bits -> pending_ (holds the global lock)
  absl::Status WriteProtect(bool on);
  void ServeWriteFaults();  // kUffdWpSync: the fault thread

  Mechanism mechanism_;
  uint8_t* base_;
  uint64_t bytes_;
  UniqueFd uffd_;
  UniqueFd pagemap_;
  bool protected_ = false;
  DirtyBitmap pending_;  // soft-dirty: bits harvested before another tracker cleared them
  // kUffdWpSync: pages written since the last collection. A page is unprotected exactly when it
  // is set here; the fault thread sets it and lifts the protection under sync_mu_, and Collect
  // re-protects everything and takes the set under it, so no write falls between.
  std::mutex sync_mu_;
  DirtyBitmap sync_written_;
  UniqueFd stop_fd_;  // eventfd that ends the fault thread
  std::thread fault_thread_;
};

}  // namespace ferry
