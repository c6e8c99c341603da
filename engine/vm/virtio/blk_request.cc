#include "engine/vm/virtio/blk_request.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace ferry {
namespace {

constexpr uint32_t kHeaderBytes = 16;

// Why a well-formed chain still gets IOERR (or UNSUPP), or nullopt when it may run.
std::optional<uint8_t> Refusal(const BlkRequest& r, uint64_t capacity_bytes) {
  for (const ChainSegment& s : r.data) {
    if (!s.host) return kVirtioBlkStatusIoErr;  // buffer outside guest RAM
  }
  switch (r.type) {
    case kVirtioBlkTypeIn:
    case kVirtioBlkTypeOut: {
      const bool device_writes = r.type == kVirtioBlkTypeIn;
      for (const ChainSegment& s : r.data) {
        if (s.device_writes != device_writes) return kVirtioBlkStatusIoErr;
      }
      if (r.data_bytes == 0 || r.data_bytes % kVirtioBlkSectorBytes != 0) return kVirtioBlkStatusIoErr;
      const uint64_t sectors = capacity_bytes / kVirtioBlkSectorBytes;
      if (r.sector > sectors || r.data_bytes / kVirtioBlkSectorBytes > sectors - r.sector) {
        return kVirtioBlkStatusIoErr;  // outside the disk
      }
      return std::nullopt;
    }
    case kVirtioBlkTypeFlush:
      return r.data.empty() ? std::nullopt : std::optional<uint8_t>(kVirtioBlkStatusIoErr);
    case kVirtioBlkTypeGetId:
      for (const ChainSegment& s : r.data) {
        if (!s.device_writes) return kVirtioBlkStatusIoErr;
      }
      return std::nullopt;
    default:
      return kVirtioBlkStatusUnsupported;
  }
}

}  // namespace

absl::StatusOr<BlkRequest> ParseBlkRequest(std::span<const ChainSegment> chain, uint64_t capacity_bytes) {
  if (chain.empty()) return absl::InvalidArgumentError("empty descriptor chain");
  const ChainSegment& last = chain.back();
  if (!last.device_writes || !last.host) {
    return absl::InvalidArgumentError("the last descriptor is not a device-writable buffer in guest RAM (no status byte)");
  }
  BlkRequest r;
  // The status is the last byte of the last buffer (normally a descriptor of its own).
  r.status = ChainSegment{last.gpa + last.bytes - 1, 1, true, last.host + last.bytes - 1};
  const ChainSegment& header = chain.front();
  if (chain.size() < 2 || header.device_writes || !header.host || header.bytes < kHeaderBytes || last.bytes != 1) {
    r.immediate_status = kVirtioBlkStatusIoErr;
    return r;
  }
  std::memcpy(&r.type, header.host, 4);
  std::memcpy(&r.sector, header.host + 8, 8);
  r.data.assign(chain.begin() + 1, chain.end() - 1);
  for (const ChainSegment& s : r.data) r.data_bytes += s.bytes;
  r.immediate_status = Refusal(r, capacity_bytes);
  return r;
}

}  // namespace ferry
