#pragma once
// How the source moves one round of pages. Two implementations: StreamPageSender (MemoryBatch
// messages on the control stream, `--transport grpc`) and the data connections of
// engine/transport (the default). The engine only asks for rounds; ordering across connections
// is the sender's business (docs/wire_protocol.md "Ordering"). A storage migration's disk blocks
// ride in the same rounds where the sender carries them (carries_disk_blocks(): the data
// connections), so the round barriers order them exactly as they order pages.

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "engine/memory/dirty_bitmap.h"
#include "engine/memory/guest_memory.h"

namespace ferry {

struct RoundCounters {
  uint64_t pages = 0;       // pages described (data + zero + holes)
  uint64_t zero_pages = 0;  // pages sent as zero markers (holes included)
  uint64_t hole_pages = 0;  // never-touched pages sent as range markers without being read
  uint64_t data_bytes = 0;  // page bytes carried
  uint64_t wire_bytes = 0;  // bytes on the wire: page and block data, headers, record overhead
  uint64_t disk_blocks = 0;       // disk blocks described (data + zero)
  uint64_t disk_zero_blocks = 0;  // disk blocks sent as zero markers
  uint64_t disk_data_bytes = 0;   // disk block bytes carried
};

// One file disk's blocks to send in a round (a storage migration, docs/storage_migration.md):
// the blocks set in `blocks` (4 KiB each) read from the source's disk file `fd` with pread.
struct RoundDisk {
  uint32_t disk = 0;    // index among the VM's file disks
  int fd = -1;
  uint64_t bytes = 0;   // the disk's size; a last partial block is read up to it, zero beyond
  const DirtyBitmap* blocks = nullptr;
};

class PageSender {
 public:
  virtual ~PageSender() = default;
  // Sends every page set in `pages` as round `round` and ends the round. `populated`, when given
  // (round 1), marks the pages that may hold data: the others are holes of the memory file, sent
  // as range markers without being read. `disks`: disk blocks that go in the same round (only
  // where carries_disk_blocks()). Returns once every page and block is on its way and the
  // round's end is marked on every connection. Adds to `out`.
  virtual absl::Status SendRound(const GuestMemory& mem, const DirtyBitmap& pages, uint32_t round,
                                 const DirtyBitmap* populated, std::span<const RoundDisk> disks,
                                 RoundCounters& out) = 0;
  // Whether SendRound carries disk blocks (the data connections). Otherwise they travel as
  // DiskBlocks messages on the control stream.
  virtual bool carries_disk_blocks() const { return false; }
  // From any thread: the running SendRound stops at the next batch with a Cancelled error.
  virtual void Cancel() = 0;
  // Caps the send rate (MiB/s, 0 = unlimited); applies from the next batch.
  virtual void SetMaxBandwidth(double mibps) = 0;
  virtual uint32_t connections() const = 0;  // 0: pages travel on the control stream
  virtual bool encrypted() const = 0;
  virtual bool zero_copy() const { return false; }
};

// The destination's disks of a storage migration, as the data connections write them
// (DiskCopyReceiver implements it).
class IncomingDisks {
 public:
  virtual ~IncomingDisks() = default;
  virtual uint32_t disk_count() const = 0;
  virtual uint64_t disk_blocks(uint32_t disk) const = 0;  // 4 KiB blocks, the last one maybe partial
  // Writes `count` blocks of disk `disk` from block `first` (the caller checked they lie inside
  // it): `data` holds count * 4096 bytes, or is null for blocks that are zero (punched). Safe
  // from several threads at once (each block is written by one of them per round).
  virtual absl::Status WriteBlocks(uint32_t disk, uint64_t first, uint32_t count, const uint8_t* data) = 0;
};

// The destination's side of a data path (engine/transport implements it).
class IncomingPages {
 public:
  virtual ~IncomingPages() = default;
  // Blocks until every connection has delivered the end of round `round` (so every page of that
  // round and before is in guest memory), or fails: a data error, or no progress for
  // `timeout_ms`.
  virtual absl::Status WaitRoundComplete(uint32_t round, int64_t timeout_ms) = 0;
  // A storage migration: disk frames are written into `disks` (alive until Close). Without it a
  // disk frame fails the data path. Called before any connection is attached.
  virtual void ReceiveDisksInto(IncomingDisks* disks) = 0;
  // Closes the connections and joins their threads; no page or block is written afterwards.
  virtual void Close() = 0;
  virtual uint64_t pages_received() const = 0;
};

}  // namespace ferry
