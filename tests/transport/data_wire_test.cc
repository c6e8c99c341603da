// Frames of a data connection: every field survives a round trip and every bad-input rule of
// DecodeFrameHeader / DecodeRuns refuses what it should, with a message that names the problem.
#include "engine/transport/data_wire.h"

#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kGuestPages = 1000;

std::vector<uint8_t> Header(const FrameHeader& h) {
  std::vector<uint8_t> b(kDataHeaderBytes);
  EncodeFrameHeader(h, b.data());
  return b;
}

std::vector<uint8_t> Table(const std::vector<WireRun>& runs) {
  std::vector<uint8_t> b(runs.size() * kDataRunBytes);
  for (size_t i = 0; i < runs.size(); ++i) EncodeRun(runs[i], b.data() + i * kDataRunBytes);
  return b;
}

FrameHeader Batch(uint16_t runs, uint32_t data_pages, uint64_t index = 7, uint32_t round = 3) {
  FrameHeader h;
  h.type = FrameType::kBatch;
  h.run_count = runs;
  h.round = round;
  h.data_pages = data_pages;
  h.index = index;
  return h;
}

absl::Status DecodeHeader(const std::vector<uint8_t>& b, uint64_t expected_index) {
  FrameHeader out;
  return DecodeFrameHeader(b.data(), expected_index, out);
}

absl::Status DecodeTable(const FrameHeader& h, const std::vector<WireRun>& runs) {
  std::vector<WireRun> out;
  std::vector<uint8_t> t = Table(runs);
  return DecodeRuns(h, t.data(), kGuestPages, out);
}

TEST(DataWireTest, HeaderRoundTripsEveryField) {
  FrameHeader in = Batch(513, 200, 0x0123456789abcdefull, 0xfedcba98u);
  std::vector<uint8_t> b = Header(in);
  uint32_t magic;
  std::memcpy(&magic, b.data(), 4);
  EXPECT_EQ(magic, kDataMagic);
  EXPECT_EQ(0, std::memcmp(b.data(), "FDP2", 4));
  FrameHeader out;
  absl::Status st = DecodeFrameHeader(b.data(), in.index, out);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(out.type, FrameType::kBatch);
  EXPECT_EQ(out.run_count, 513);
  EXPECT_EQ(out.round, 0xfedcba98u);
  EXPECT_EQ(out.data_pages, 200u);
  EXPECT_EQ(out.index, 0x0123456789abcdefull);

  FrameHeader end;
  end.type = FrameType::kRoundEnd;
  end.round = 4;
  end.index = 0;
  b = Header(end);
  ASSERT_TRUE(DecodeFrameHeader(b.data(), 0, out).ok());
  EXPECT_EQ(out.type, FrameType::kRoundEnd);
  EXPECT_EQ(out.round, 4u);
  EXPECT_EQ(out.run_count, 0);
}

TEST(DataWireTest, RunsRoundTripAndMatchHeader) {
  std::vector<WireRun> runs = {{0, 1, 0}, {5, 100, kRunZero}, {999, 1, 0}, {200, 250, 0}};
  FrameHeader h = Batch(static_cast<uint16_t>(runs.size()), 1 + 1 + 250);
  std::vector<uint8_t> t = Table(runs);
  std::vector<WireRun> out;
  absl::Status st = DecodeRuns(h, t.data(), kGuestPages, out);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(out.size(), runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    EXPECT_EQ(out[i].first_page, runs[i].first_page) << i;
    EXPECT_EQ(out[i].count, runs[i].count) << i;
    EXPECT_EQ(out[i].flags, runs[i].flags) << i;
  }
  EXPECT_FALSE(out[0].zero());
  EXPECT_TRUE(out[1].zero());
}

TEST(DataWireTest, RefusesBadMagic) {
  std::vector<uint8_t> b = Header(Batch(1, 1));
  b[0] ^= 0x20;
  absl::Status st = DecodeHeader(b, 7);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(st.message(), HasSubstr("does not start with the FDP2 magic"));
}

TEST(DataWireTest, RefusesUnknownType) {
  for (uint8_t type : {0, 4, 255}) {
    std::vector<uint8_t> b = Header(Batch(1, 1));
    b[4] = type;
    absl::Status st = DecodeHeader(b, 7);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << int{type};
    EXPECT_THAT(st.message(), HasSubstr("has unknown type")) << int{type};
  }
}

TEST(DataWireTest, RefusesNonZeroReservedBytes) {
  for (size_t at : {size_t{5}, size_t{24}, size_t{31}}) {
    std::vector<uint8_t> b = Header(Batch(1, 1));
    b[at] = 1;
    absl::Status st = DecodeHeader(b, 7);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << at;
    EXPECT_THAT(st.message(), HasSubstr("non-zero reserved bytes")) << at;
  }
}

TEST(DataWireTest, DiskFrameCarriesItsDiskIndexAndChecksRunsAgainstTheDisk) {
  FrameHeader in = Batch(2, 1);
  in.type = FrameType::kDiskBatch;
  in.disk = 3;
  std::vector<uint8_t> b = Header(in);
  FrameHeader out;
  ASSERT_TRUE(DecodeFrameHeader(b.data(), in.index, out).ok());
  EXPECT_EQ(out.type, FrameType::kDiskBatch);
  EXPECT_EQ(out.disk, 3u);
  // Bytes 28..31 stay reserved; a page batch's disk field too.
  b[28] = 1;
  EXPECT_THAT(DecodeHeader(b, 7).message(), HasSubstr("non-zero reserved bytes"));
  std::vector<uint8_t> batch = Header(Batch(1, 1));
  batch[24] = 3;
  EXPECT_THAT(DecodeHeader(batch, 7).message(), HasSubstr("non-zero reserved bytes"));
  std::vector<WireRun> runs;
  std::vector<uint8_t> t = Table({{0, 1, kRunZero}, {99, 2, 0}});
  absl::Status st = DecodeRuns(out, t.data(), 100, runs);
  EXPECT_EQ(st.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(st.message(), HasSubstr("disk blocks 99..100 are outside disk 3 of 100 blocks"));
  in.run_count = 0;
  in.data_pages = 0;
  EXPECT_THAT(DecodeHeader(Header(in), 7).message(), HasSubstr("has no runs"));
}

TEST(DataWireTest, RefusesReplayedOrDroppedFrame) {
  std::vector<uint8_t> b = Header(Batch(1, 1, /*index=*/7));
  // The connection expected frame 8: frame 7 again is a replay.
  absl::Status replay = DecodeHeader(b, 8);
  EXPECT_EQ(replay.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(replay.message(), HasSubstr("frame 7 arrived where frame 8 was expected"));
  EXPECT_THAT(replay.message(), HasSubstr("replayed, dropped or reordered"));
  // The connection expected frame 6: frame 6 was dropped.
  absl::Status drop = DecodeHeader(b, 6);
  EXPECT_EQ(drop.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(drop.message(), HasSubstr("frame 7 arrived where frame 6 was expected"));
}

TEST(DataWireTest, RefusesRoundZero) {
  absl::Status st = DecodeHeader(Header(Batch(1, 1, 7, /*round=*/0)), 7);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(st.message(), HasSubstr("names round 0"));
}

TEST(DataWireTest, RefusesRoundEndWithRunsOrData) {
  FrameHeader h = Batch(1, 0);
  h.type = FrameType::kRoundEnd;
  absl::Status st = DecodeHeader(Header(h), 7);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(st.message(), HasSubstr("round-end frame 7 carries runs or data"));
  h.run_count = 0;
  h.data_pages = 1;
  st = DecodeHeader(Header(h), 7);
  EXPECT_THAT(st.message(), HasSubstr("carries runs or data"));
}

TEST(DataWireTest, RefusesTooManyRunsOrPages) {
  EXPECT_TRUE(DecodeHeader(Header(Batch(kMaxRunsPerFrame, kMaxDataPagesPerFrame)), 7).ok());
  absl::Status runs = DecodeHeader(Header(Batch(kMaxRunsPerFrame + 1, 1)), 7);
  EXPECT_EQ(runs.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(runs.message(), HasSubstr("has 1025 runs (at most 1024)"));
  absl::Status pages = DecodeHeader(Header(Batch(1, kMaxDataPagesPerFrame + 1)), 7);
  EXPECT_EQ(pages.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(pages.message(), HasSubstr("carries 257 pages of data (at most 256)"));
}

TEST(DataWireTest, RefusesBatchWithoutRuns) {
  absl::Status st = DecodeHeader(Header(Batch(0, 0)), 7);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(st.message(), HasSubstr("batch frame 7 has no runs"));
}

TEST(DataWireTest, RefusesRunOutsideGuestMemory) {
  // Starts past the end.
  absl::Status st = DecodeTable(Batch(1, 1), {{kGuestPages, 1, 0}});
  EXPECT_EQ(st.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(st.message(), HasSubstr("outside guest memory of 1000 pages"));
  // Starts inside, runs past the end.
  st = DecodeTable(Batch(1, 0), {{kGuestPages - 2, 3, kRunZero}});
  EXPECT_EQ(st.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(st.message(), HasSubstr("pages 998..1000 are outside guest memory"));
  // first_page + count wraps around 2^64: must not look like it ends inside.
  st = DecodeTable(Batch(1, 0), {{UINT64_MAX - 1, 3, kRunZero}});
  EXPECT_EQ(st.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(st.message(), HasSubstr("outside guest memory"));
  // The last page exactly is fine.
  EXPECT_TRUE(DecodeTable(Batch(1, 1), {{kGuestPages - 1, 1, 0}}).ok());
}

TEST(DataWireTest, RefusesEmptyRun) {
  absl::Status st = DecodeTable(Batch(2, 1), {{0, 1, 0}, {10, 0, 0}});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("frame 7 run 1 has count 0"));
}

TEST(DataWireTest, RefusesUnknownFlags) {
  for (uint32_t flags : {2u, 0x80000000u, kRunZero | 4u}) {
    absl::Status st = DecodeTable(Batch(1, 1), {{0, 1, flags}});
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << flags;
    EXPECT_THAT(st.message(), HasSubstr("run 0 has unknown flags")) << flags;
  }
}

TEST(DataWireTest, RefusesDataPagesNotMatchingHeader) {
  // Runs carry 3 data pages (zero runs carry none); the header announces 4, then 2.
  std::vector<WireRun> runs = {{0, 2, 0}, {2, 50, kRunZero}, {60, 1, 0}};
  absl::Status more = DecodeTable(Batch(3, 4), runs);
  EXPECT_EQ(more.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(more.message(), HasSubstr("runs describe 3 data pages but the header announces 4"));
  absl::Status fewer = DecodeTable(Batch(3, 2), runs);
  EXPECT_THAT(fewer.message(), HasSubstr("runs describe 3 data pages but the header announces 2"));
  EXPECT_TRUE(DecodeTable(Batch(3, 3), runs).ok());
}

}  // namespace
}  // namespace ferry
