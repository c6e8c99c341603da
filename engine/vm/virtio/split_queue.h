#pragma once
// One split virtqueue (virtio 1.1 section 2.6) as the device sees it: rings in guest RAM, read
// through GuestRamAccess. Every descriptor is copied out of guest memory once and checked on the
// copy, so a driver that rewrites a ring meanwhile cannot make the device touch host memory.

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/vm/virtio/guest_ram_access.h"

namespace ferry {

struct QueueLayout {
  uint16_t size = 0;  // a power of 2
  uint64_t desc_gpa = 0;
  uint64_t avail_gpa = 0;  // the driver area
  uint64_t used_gpa = 0;   // the device area
};

// One buffer of a chain, translated.
struct ChainSegment {
  uint64_t gpa;
  uint32_t bytes;
  bool device_writes;  // VIRTQ_DESC_F_WRITE
  uint8_t* host;  // nullptr when the buffer is not wholly inside guest RAM
};

class SplitQueue {
 public:
  // Checks size, alignment and that each ring lies in guest RAM; the error names the ring.
  // `next_avail` / `next_used`: where the device left off (0 for a new queue).
  static absl::StatusOr<SplitQueue> Create(const GuestRamAccess& ram, const QueueLayout& layout,
                                           uint16_t next_avail, uint16_t next_used);

  // Head of the next chain the driver made available, or nullopt when there is none.
  std::optional<uint16_t> PopAvailable();
  // The chain starting at `head`, at most `max_segments` long; an error says how it is malformed
  // (index out of range, loop, indirect).
  absl::StatusOr<std::vector<ChainSegment>> ReadChain(uint16_t head, uint32_t max_segments) const;
  // Publishes `head` in the used ring with `written` bytes; used->idx moves last (release), so a
  // polling driver sees a complete element. True when the driver wants an interrupt.
  bool PushUsed(uint16_t head, uint32_t written);

  uint16_t next_avail() const { return next_avail_; }
  uint16_t next_used() const { return next_used_; }
  const QueueLayout& layout() const { return layout_; }

 private:
  SplitQueue(const GuestRamAccess& ram, const QueueLayout& layout, uint16_t next_avail, uint16_t next_used);

  const GuestRamAccess* ram_;
  QueueLayout layout_;
  uint8_t* desc_;
  uint8_t* avail_;
  uint8_t* used_;
  uint16_t next_avail_;
  uint16_t next_used_;
};

}  // namespace ferry
