#pragma once
// A storage migration's disks ("change both host and datastore", docs/storage_migration.md): the
// source copies each file disk while the guest runs (a bulk copy of every block the file holds
// data for, then iterations of the blocks the VM's virtio-blk devices wrote since), in the rounds
// of the data connections (PageSender::SendRound's RoundDisks) or, on the gRPC transport, as
// DiskBlocks messages on the control channel; the destination writes them into its new disk files.
// Blocks are 4 KiB (kDiskWriteBlockBytes, the device's write-log granularity).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/base/unique_fd.h"
#include "engine/memory/dirty_bitmap.h"
#include "engine/migration/migration_channel.h"
#include "engine/migration/page_sender.h"
#include "engine/vm/vm_spec.h"
#include "proto/ferry/v1/peer.pb.h"

namespace ferry {

inline constexpr uint64_t kDiskBlockBytes = 4096;
// Per DiskBlocks message: at most 1 MiB of block data (gRPC's message cap is 4 MiB) and 1024 runs.
inline constexpr uint64_t kMaxDiskBlocksPerMessage = 256;
inline constexpr int kMaxDiskRunsPerMessage = 1024;

struct DiskCopyCounters {
  uint64_t blocks = 0;       // blocks described (data + zero)
  uint64_t zero_blocks = 0;  // sent as zero markers
  uint64_t data_bytes = 0;   // block bytes carried
  uint64_t wire_bytes = 0;   // message bytes
};

// ORs into `out` (one bit per block of file disk `disk`) the blocks written since the last call
// and forgets them: CollectDiskWrites of engine/vm/micro_vm.h in production.
using DiskWriteLog = std::function<absl::Status(uint32_t disk, DirtyBitmap& out)>;

// The file disks of `spec` (kind file, in order): their paths and sizes.
struct FileDisk {
  std::string path;
  uint64_t bytes = 0;
};
std::vector<FileDisk> FileDisksOf(const VmSpec& spec);

class DiskCopySource {
 public:
  // Opens every file disk of `spec` for reading.
  static absl::StatusOr<std::unique_ptr<DiskCopySource>> Open(const VmSpec& spec, DiskWriteLog log);

  std::vector<uint64_t> disk_bytes() const;
  // Round 1: forgets the writes logged so far (the copy reads the files after this), then sends
  // every block the files hold data for (SEEK_DATA; holes are never read nor sent).
  absl::Status SendBulk(MigrationChannel& channel, DiskCopyCounters& out);
  // Round 1 on the data connections: forgets the writes logged so far, then marks pending every
  // block the files hold data for (the round carrying PendingRoundDisks() sends them).
  absl::Status MarkBulk();
  // The pending blocks of every disk, for PageSender::SendRound (valid until the next change).
  std::vector<RoundDisk> PendingRoundDisks() const;
  void ClearPending();
  // Adds the blocks written since the last collection to the pending set.
  absl::Status CollectWrites();
  uint64_t pending_blocks() const;
  // Sends the pending blocks as `round` (final: the guest is paused) and clears them.
  absl::Status SendPending(MigrationChannel& channel, uint32_t round, bool final, DiskCopyCounters& out);
  // The synchronous mirror (disk_mirror.h): sends `blocks` of disk `index`, the last message
  // marked with `cut` so the destination acknowledges it. Safe beside SendBulk/SendPending of
  // other threads (reads only the files).
  absl::Status SendMirrorCut(MigrationChannel& channel, uint32_t index, const DirtyBitmap& blocks, uint64_t cut,
                             DiskCopyCounters& out);
  uint64_t disk_blocks(uint32_t index) const { return disks_[index].pending.num_pages(); }
  uint32_t disk_count() const { return static_cast<uint32_t>(disks_.size()); }
  // From any thread: the running send stops at the next message with a Cancelled error.
  void Cancel() { cancel_.store(true); }

 private:
  struct Disk {
    UniqueFd fd;
    std::string path;
    uint64_t bytes = 0;
    DirtyBitmap pending;  // one bit per block
  };
  DiskCopySource(std::vector<Disk> disks, DiskWriteLog log) : disks_(std::move(disks)), log_(std::move(log)) {}
  // Forgets the writes logged so far on disk `index` and returns the blocks its file holds data for.
  absl::StatusOr<DirtyBitmap> ForgetLogAndFindData(uint32_t index);
  // Sends the blocks set in `blocks` of disk `index`.
  absl::Status SendBlocks(MigrationChannel& channel, uint32_t index, const DirtyBitmap& blocks, uint32_t round,
                          bool final, DiskCopyCounters& out, uint64_t mirror_cut = 0);

  std::vector<Disk> disks_;
  DiskWriteLog log_;
  std::atomic<bool> cancel_{false};
};

// The destination's side: writes DiskBlocks (control stream) or disk frames (data connections,
// through IncomingDisks) into the VM's new disk files.
class DiskCopyReceiver : public IncomingDisks {
 public:
  // Opens every file disk of `spec` for writing; their sizes must equal `expected_bytes`.
  static absl::StatusOr<std::unique_ptr<DiskCopyReceiver>> Open(const VmSpec& spec,
                                                                const std::vector<uint64_t>& expected_bytes);
  // Checks the whole message (disk index, runs inside the disk, data lengths) before writing any
  // of it. InvalidArgument / OutOfRange for a bad message, an errno error for a failed write.
  // Starts (never waits for) the write-back of every block it writes.
  absl::Status Apply(const v1::DiskBlocks& blocks);
  uint64_t blocks_written() const { return blocks_written_.load(); }

  uint32_t disk_count() const override { return static_cast<uint32_t>(disks_.size()); }
  uint64_t disk_blocks(uint32_t disk) const override { return disks_[disk].blocks; }
  absl::Status WriteBlocks(uint32_t disk, uint64_t first, uint32_t count, const uint8_t* data) override;

 private:
  struct Disk {
    UniqueFd fd;
    uint64_t blocks = 0;
    uint64_t bytes = 0;
  };
  explicit DiskCopyReceiver(std::vector<Disk> disks) : disks_(std::move(disks)) {}
  std::vector<Disk> disks_;
  std::atomic<uint64_t> blocks_written_{0};
};

}  // namespace ferry
