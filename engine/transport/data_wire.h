#pragma once
// The frames of a data connection (docs/wire_protocol.md "Data connections"). Pure encoding and
// validation: no sockets, so every bad-input rule has a unit test.
//
//   frame  = header (32 bytes) [run table: run_count x 16 bytes] [page data: data_pages x 4096]
//   header = u32 magic "FDP2" | u8 type | u8 0 | u16 run_count | u32 round | u32 data_pages |
//            u64 frame index on this connection | u32 disk (disk frames; else 0) | u32 0
//                                                                      (little-endian)
//   run    = u64 first_page | u32 count | u32 flags (bit 0: zero, no data)
//
// A disk frame (type 3, a storage migration's blocks) has the same shape: its runs name 4 KiB
// blocks of file disk `disk` instead of guest pages, its data the blocks' bytes.
//
// Sealed connections carry the header and run table as one AES-GCM record and the page data as
// a second one (absent when data_pages = 0).

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"

namespace ferry {

inline constexpr uint32_t kDataMagic = 0x32504446;  // "FDP2" read as little-endian bytes
inline constexpr size_t kDataHeaderBytes = 32;
inline constexpr size_t kDataRunBytes = 16;
inline constexpr uint32_t kMaxRunsPerFrame = 1024;
inline constexpr uint32_t kMaxDataPagesPerFrame = 256;  // 1 MiB of page data
inline constexpr uint32_t kRunZero = 1;

enum class FrameType : uint8_t {
  kBatch = 1,     // page runs of the current round
  kRoundEnd = 2,  // this connection sent every page of `round` it had
  kDiskBatch = 3, // block runs of one file disk, in the current round
};

struct FrameHeader {
  FrameType type = FrameType::kBatch;
  uint16_t run_count = 0;
  uint32_t round = 0;
  uint32_t data_pages = 0;
  uint64_t index = 0;
  uint32_t disk = 0;  // kDiskBatch only
};

struct WireRun {
  uint64_t first_page = 0;
  uint32_t count = 0;
  uint32_t flags = 0;
  bool zero() const { return flags & kRunZero; }
};

// The destination's acknowledgement, on each connection, once every connection has applied a
// round: u32 magic "FDPA" | u32 round. The source's round ends only with it, so its bandwidth
// figure is end to end and no backlog sits in socket buffers when the guest pauses.
inline constexpr uint32_t kAckMagic = 0x41504446;  // "FDPA"
inline constexpr size_t kAckBytes = 8;
void EncodeAck(uint32_t round, uint8_t* out);
absl::Status DecodeAck(const uint8_t* in, uint32_t expected_round);

void EncodeFrameHeader(const FrameHeader& h, uint8_t* out);
void EncodeRun(const WireRun& r, uint8_t* out);

// Parses and checks a header: magic, type, bounds. `expected_index` is the frame count seen on
// this connection so far (a skipped or repeated frame is an error).
absl::Status DecodeFrameHeader(const uint8_t* in, uint64_t expected_index, FrameHeader& out);

// Parses the run table and checks every run against guest memory of `num_pages` pages (a disk
// frame: the disk's `num_pages` blocks): inside it, count > 0, only known flags, data runs adding
// up to exactly header.data_pages.
absl::Status DecodeRuns(const FrameHeader& h, const uint8_t* in, uint64_t num_pages, std::vector<WireRun>& out);

}  // namespace ferry
