#pragma once
// A virtio-blk request as the device reads it from one descriptor chain (virtio 1.1 section
// 5.2.6): a 16-byte header, data buffers, a 1-byte status. Pure parsing and checking: nothing here
// touches the disk.

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/vm/virtio/split_queue.h"

namespace ferry {

inline constexpr uint32_t kVirtioBlkTypeIn = 0;
inline constexpr uint32_t kVirtioBlkTypeOut = 1;
inline constexpr uint32_t kVirtioBlkTypeFlush = 4;
inline constexpr uint32_t kVirtioBlkTypeGetId = 8;
inline constexpr uint8_t kVirtioBlkStatusOk = 0;
inline constexpr uint8_t kVirtioBlkStatusIoErr = 1;
inline constexpr uint8_t kVirtioBlkStatusUnsupported = 2;
inline constexpr uint64_t kVirtioBlkSectorBytes = 512;
inline constexpr uint32_t kVirtioBlkIdBytes = 20;

struct BlkRequest {
  uint32_t type = 0;
  uint64_t sector = 0;
  std::vector<ChainSegment> data;
  uint64_t data_bytes = 0;
  ChainSegment status{};
  // Set when the request is answered without touching the disk (IOERR, UNSUPP).
  std::optional<uint8_t> immediate_status;
};

// Reads `chain` as a request on a disk of `capacity_bytes`. A request the device must refuse
// comes back with immediate_status set; an error means not even the status byte is usable (the
// device then needs a reset).
absl::StatusOr<BlkRequest> ParseBlkRequest(std::span<const ChainSegment> chain, uint64_t capacity_bytes);

}  // namespace ferry
