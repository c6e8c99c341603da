#include "engine/transport/data_wire.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace ferry {
namespace {

void Put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
void Put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void Put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint16_t Get16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
uint32_t Get32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
uint64_t Get64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the data-connection format is little-endian");

}  // namespace

void EncodeAck(uint32_t round, uint8_t* out) {
  Put32(out, kAckMagic);
  Put32(out + 4, round);
}

absl::Status DecodeAck(const uint8_t* in, uint32_t expected_round) {
  if (Get32(in) != kAckMagic) return absl::DataLossError("the destination's round acknowledgement is malformed");
  if (Get32(in + 4) != expected_round) {
    return absl::DataLossError(absl::StrCat("the destination acknowledged round ", Get32(in + 4), " where round ",
                                            expected_round, " ended"));
  }
  return absl::OkStatus();
}

void EncodeFrameHeader(const FrameHeader& h, uint8_t* out) {
  std::memset(out, 0, kDataHeaderBytes);
  Put32(out, kDataMagic);
  out[4] = static_cast<uint8_t>(h.type);
  Put16(out + 6, h.run_count);
  Put32(out + 8, h.round);
  Put32(out + 12, h.data_pages);
  Put64(out + 16, h.index);
  if (h.type == FrameType::kDiskBatch) Put32(out + 24, h.disk);
}

void EncodeRun(const WireRun& r, uint8_t* out) {
  Put64(out, r.first_page);
  Put32(out + 8, r.count);
  Put32(out + 12, r.flags);
}

absl::Status DecodeFrameHeader(const uint8_t* in, uint64_t expected_index, FrameHeader& out) {
  if (Get32(in) != kDataMagic) {
    return absl::DataLossError(absl::StrCat("frame ", expected_index, " does not start with the FDP2 magic"));
  }
  uint8_t type = in[4];
  if (type != static_cast<uint8_t>(FrameType::kBatch) && type != static_cast<uint8_t>(FrameType::kRoundEnd) &&
      type != static_cast<uint8_t>(FrameType::kDiskBatch)) {
    return absl::DataLossError(absl::StrCat("frame ", expected_index, " has unknown type ", type));
  }
  const bool disk = type == static_cast<uint8_t>(FrameType::kDiskBatch);
  if (in[5] != 0 || Get32(in + 28) != 0 || (!disk && Get32(in + 24) != 0)) {
    return absl::DataLossError(absl::StrCat("frame ", expected_index, " has non-zero reserved bytes"));
  }
  out.type = static_cast<FrameType>(type);
  out.run_count = Get16(in + 6);
  out.round = Get32(in + 8);
  out.data_pages = Get32(in + 12);
  out.index = Get64(in + 16);
  out.disk = disk ? Get32(in + 24) : 0;
  if (out.index != expected_index) {
    return absl::DataLossError(absl::StrCat("frame ", out.index, " arrived where frame ", expected_index,
                                            " was expected (replayed, dropped or reordered)"));
  }
  if (out.round == 0) return absl::DataLossError(absl::StrCat("frame ", out.index, " names round 0"));
  if (out.type == FrameType::kRoundEnd && (out.run_count != 0 || out.data_pages != 0)) {
    return absl::DataLossError(absl::StrCat("round-end frame ", out.index, " carries runs or data"));
  }
  if (out.run_count > kMaxRunsPerFrame) {
    return absl::DataLossError(absl::StrCat("frame ", out.index, " has ", out.run_count, " runs (at most ",
                                            kMaxRunsPerFrame, ")"));
  }
  if (out.data_pages > kMaxDataPagesPerFrame) {
    return absl::DataLossError(absl::StrCat("frame ", out.index, " carries ", out.data_pages,
                                            " pages of data (at most ", kMaxDataPagesPerFrame, ")"));
  }
  if (out.type != FrameType::kRoundEnd && out.run_count == 0) {
    return absl::DataLossError(absl::StrCat("batch frame ", out.index, " has no runs"));
  }
  return absl::OkStatus();
}

absl::Status DecodeRuns(const FrameHeader& h, const uint8_t* in, uint64_t num_pages, std::vector<WireRun>& out) {
  out.clear();
  out.reserve(h.run_count);
  uint64_t data_pages = 0;
  for (uint32_t i = 0; i < h.run_count; ++i) {
    const uint8_t* p = in + size_t{i} * kDataRunBytes;
    WireRun r{Get64(p), Get32(p + 8), Get32(p + 12)};
    if (r.count == 0) {
      return absl::InvalidArgumentError(absl::StrCat("frame ", h.index, " run ", i, " has count 0"));
    }
    if ((r.flags & ~kRunZero) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("frame ", h.index, " run ", i, " has unknown flags ", r.flags));
    }
    if ((r.first_page >= num_pages || r.count > num_pages - r.first_page) && h.type == FrameType::kDiskBatch) {
      return absl::OutOfRangeError(absl::StrCat("disk blocks ", r.first_page, "..", r.first_page + r.count - 1,
                                                " are outside disk ", h.disk, " of ", num_pages, " blocks"));
    }
    if (r.first_page >= num_pages || r.count > num_pages - r.first_page) {
      return absl::OutOfRangeError(absl::StrCat("pages ", r.first_page, "..", r.first_page + r.count - 1,
                                                " are outside guest memory of ", num_pages, " pages"));
    }
    if (!r.zero()) data_pages += r.count;
    out.push_back(r);
  }
  if (data_pages != h.data_pages) {
    return absl::InvalidArgumentError(absl::StrCat("frame ", h.index, " runs describe ", data_pages,
                                                   " data pages but the header announces ", h.data_pages));
  }
  return absl::OkStatus();
}

}  // namespace ferry
