#pragma once
// A virtio-blk device on virtio-mmio (docs/virtio_blk.md), backed by a disk file through io_uring.
// vCPU threads call MmioRead/MmioWrite; the device's own thread takes requests from the
// available ring, keeps several in flight on io_uring and publishes completions in the used ring.
// It sees guest RAM (GuestRamAccess) and an interrupt line (a callback), never a KVM vCPU, so it
// runs without KVM in tests.
//
// Device thread states: quiesced (takes nothing from the ring; the state it is built in) and
// taking. Quiesce() returns once nothing is in flight on io_uring.
//
// Mirroring (a storage migration's synchronous mode, docs/storage_migration.md): between
// StartMirror() and EndMirror() the completion of every write is held back from the guest until
// the writes it belongs to were copied to the destination: CutMirror() numbers the held
// completions while the write log is collected, ReleaseMirrored(cut) publishes them once the
// destination acknowledged that cut.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "engine/vm/virtio/blk_request.h"
#include "engine/vm/virtio/guest_ram_access.h"
#include "engine/vm/virtio/mmio_bus.h"
#include "engine/vm/virtio/mmio_transport.h"
#include "engine/vm/virtio/split_queue.h"
#include "engine/vm/virtio/uring_block_file.h"
#include "proto/ferry/v1/state.pb.h"

namespace ferry {

inline constexpr uint32_t kVirtioDeviceIdBlock = 2;
inline constexpr uint64_t kVirtioBlkFSegMax = 1ull << 2;
inline constexpr uint64_t kVirtioBlkFFlush = 1ull << 9;

// What the device counted, for tests and logs.
struct VirtioBlkCounters {
  uint64_t completed = 0;     // requests published in the used ring
  uint64_t io_errors = 0;     // of those, answered IOERR
  uint64_t max_in_flight = 0; // most requests on io_uring at once
  uint64_t flushes = 0;
  uint64_t mirror_held = 0;   // write completions held until their blocks were mirrored
};

class VirtioBlkDevice : public MmioDevice {
 public:
  // Called with the byte range of every write the device performed (or attempted: a failed
  // write may have changed part of it), before the driver sees it complete: what a storage
  // migration must copy again.
  using DiskWriteSink = std::function<void(uint64_t offset, uint64_t bytes)>;
  // Whether this host's page cache of the disk file can be trusted when the VM is restored here.
  enum class HostCache {
    kMayBeStale,  // another host may have written the file (a shared datastore): Restore drops it
    kCoherent,    // this host wrote the content itself (a storage migration's copy): Restore keeps it
  };

  // `set_irq(level)` drives the device's interrupt line (may be empty: no interrupt controller).
  // `ram` must outlive the device. `on_disk_write` may be empty. `open_file`, when valid, is `path`
  // open read-write already (handed over in a same-host VMM upgrade): used, never reopened.
  static absl::StatusOr<std::unique_ptr<VirtioBlkDevice>> Create(const std::string& path, uint32_t disk_index,
                                                                 const GuestRamAccess& ram,
                                                                 std::function<void(bool)> set_irq,
                                                                 DiskWriteSink on_disk_write = nullptr,
                                                                 HostCache host_cache = HostCache::kMayBeStale,
                                                                 UniqueFd open_file = UniqueFd());
  // Waits for requests in flight, then ends the device thread.
  ~VirtioBlkDevice() override;

  void MmioRead(uint64_t offset, uint8_t* data, uint32_t size) override;
  void MmioWrite(uint64_t offset, const uint8_t* data, uint32_t size) override;

  // Stops taking requests and returns once none is in flight (all published).
  void Quiesce();
  // Takes requests again, starting with whatever the driver made available meanwhile.
  void Resume();

  // From now on a write's completion is held (not shown to the guest) until ReleaseMirrored.
  void StartMirror();
  // Waits up to `wait` for a held completion without a cut, then, under the lock every write is
  // logged under, gives each such completion the next cut number and runs `collect` (which reads
  // the write log: exactly the blocks of the completions cut here, plus any logged before the
  // mirror started). Returns the cut's number.
  uint64_t CutMirror(std::chrono::milliseconds wait, const std::function<void()>& collect);
  // Publishes the held completions of cuts up to `through` (their blocks are on the destination).
  void ReleaseMirrored(uint64_t through);
  // Publishes every held completion; completions are no longer held. Safe without StartMirror.
  void EndMirror();

  // Quiesced and no completion held only. Save also writes the disk's data through (fdatasync) for the host that will
  // run the VM next; Restore drops this host's cached pages of the disk first, unless they are
  // coherent (HostCache::kCoherent: dropping would only write back and re-read inside the pause).
  absl::StatusOr<v1::VirtioBlkState> Save();
  absl::Status Restore(const v1::VirtioBlkState& s);

  uint64_t capacity_sectors() const { return file_->size_bytes() / kVirtioBlkSectorBytes; }
  int file_fd() const { return file_->fd(); }
  VirtioBlkCounters counters() const;

 private:
  struct InFlight {
    bool used = false;
    uint16_t head = 0;
    uint32_t type = 0;
    uint64_t offset = 0;         // on the disk
    uint64_t expected = 0;       // bytes the operation must transfer
    std::vector<iovec> iov;      // alive until the completion is reaped
    std::vector<ChainSegment> data;
    ChainSegment status{};
  };

  VirtioBlkDevice(std::unique_ptr<UringBlockFile> file, uint32_t disk_index, const GuestRamAccess& ram,
                  std::function<void(bool)> set_irq, DiskWriteSink on_disk_write, HostCache host_cache);
  void Loop();
  void TakeRequestsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts `r` on io_uring or answers it at once.
  void StartLocked(uint16_t head, BlkRequest r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CompleteLocked(uint64_t tag, int32_t result) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishLocked(uint16_t head, const ChainSegment& status, uint8_t value, uint32_t written)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NeedsResetLocked(const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RaiseInterruptLocked(uint32_t bits) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Builds the queue once the driver made it live (DRIVER_OK and QueueReady).
  void ActivateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DrainLocked(std::unique_lock<std::mutex>& lock) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<uint32_t> FreeSlotLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A completed write whose completion waits for the mirror.
  struct HeldCompletion {
    uint16_t head = 0;
    ChainSegment status{};
    uint8_t value = 0;
    uint32_t written = 0;
    uint64_t cut = 0;  // 0: not cut yet
  };
  void PublishHeldLocked(uint64_t through) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::unique_ptr<UringBlockFile> file_;
  const uint32_t disk_index_;
  const GuestRamAccess& ram_;
  std::function<void(bool)> set_irq_;
  DiskWriteSink on_disk_write_;
  const HostCache host_cache_;
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  VirtioMmioTransport transport_ ABSL_GUARDED_BY(mu_);
  std::optional<SplitQueue> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<InFlight> slots_ ABSL_GUARDED_BY(mu_);
  uint32_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool quiesced_ ABSL_GUARDED_BY(mu_) = true;
  uint32_t draining_ ABSL_GUARDED_BY(mu_) = 0;  // callers waiting for in_flight_ == 0
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  VirtioBlkCounters counters_ ABSL_GUARDED_BY(mu_);
  bool mirroring_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t last_cut_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<HeldCompletion> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ferry
