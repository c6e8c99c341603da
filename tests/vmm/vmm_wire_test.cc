// The VMM socket's framing: round trips, a descriptor beside a frame, and every bound (oversized
// length, garbage body, a frame that stops halfway, a peer that hangs up, a peer that never answers).
#include "engine/vmm/vmm_wire.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include <gtest/gtest.h>

#include "proto/ferry/v1/vmm.pb.h"

namespace ferry {
namespace {

struct SocketPair {
  SocketPair() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    a.Reset(fds[0]);
    b.Reset(fds[1]);
  }
  UniqueFd a, b;
};

void WriteRaw(int fd, const void* data, size_t len) { ASSERT_EQ(write(fd, data, len), static_cast<ssize_t>(len)); }

TEST(VmmWire, ARequestRoundTrips) {
  SocketPair p;
  v1::VmmRequest sent;
  sent.set_version(kVmmProtocolVersion);
  sent.set_seq(42);
  sent.set_set_throttle(30);
  ASSERT_TRUE(WriteVmmFrame(p.a.get(), sent, 1000).ok());
  v1::VmmRequest got;
  ASSERT_TRUE(ReadVmmFrame(p.b.get(), got, 1000, 1000).ok());
  EXPECT_EQ(got.seq(), 42u);
  EXPECT_EQ(got.set_throttle(), 30u);
}

TEST(VmmWire, AMemfdTravelsBesideAFrameAndMapsTheSamePages) {
  SocketPair p;
  UniqueFd memfd(memfd_create("vmm-wire-test", MFD_CLOEXEC));
  ASSERT_TRUE(memfd.valid());
  ASSERT_EQ(ftruncate(memfd.get(), 4096), 0);
  auto* mine = static_cast<char*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0));
  ASSERT_NE(mine, MAP_FAILED);
  std::strcpy(mine, "guest page");
  v1::VmmReply reply;
  reply.set_memory_bytes(4096);
  ASSERT_TRUE(WriteVmmFrame(p.a.get(), reply, 1000, memfd.get()).ok());
  v1::VmmReply got;
  UniqueFd received;
  ASSERT_TRUE(ReadVmmFrame(p.b.get(), got, 1000, 1000, &received).ok());
  ASSERT_TRUE(received.valid());
  auto* theirs = static_cast<char*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, received.get(), 0));
  ASSERT_NE(theirs, MAP_FAILED);
  EXPECT_STREQ(theirs, "guest page");
  std::strcpy(theirs, "written back");
  EXPECT_STREQ(mine, "written back");
  munmap(mine, 4096);
  munmap(theirs, 4096);
}

TEST(VmmWire, AnOversizedLengthIsRefusedBeforeAnythingIsRead) {
  SocketPair p;
  const uint32_t len = kMaxVmmFrameBytes + 1;
  uint8_t header[4] = {uint8_t(len), uint8_t(len >> 8), uint8_t(len >> 16), uint8_t(len >> 24)};
  WriteRaw(p.a.get(), header, 4);
  v1::VmmRequest got;
  absl::Status st = ReadVmmFrame(p.b.get(), got, 1000, 1000);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find("exceeds the limit"), std::string::npos) << st;
}

TEST(VmmWire, AGarbageBodyDoesNotParse) {
  SocketPair p;
  uint8_t frame[4 + 6] = {6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  WriteRaw(p.a.get(), frame, sizeof(frame));
  v1::VmmRequest got;
  absl::Status st = ReadVmmFrame(p.b.get(), got, 1000, 1000);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
}

TEST(VmmWire, AFrameThatStopsHalfwayTimesOut) {
  SocketPair p;
  uint8_t partial[4 + 2] = {100, 0, 0, 0, 8, 1};  // says 100 bytes, sends 2
  WriteRaw(p.a.get(), partial, sizeof(partial));
  v1::VmmRequest got;
  absl::Status st = ReadVmmFrame(p.b.get(), got, 1000, 100);
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
}

TEST(VmmWire, APeerThatNeverAnswersTimesOut) {
  SocketPair p;
  v1::VmmReply got;
  absl::Status st = ReadVmmFrame(p.b.get(), got, 50, 50);
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
}

TEST(VmmWire, APeerThatHangsUpIsUnavailable) {
  SocketPair p;
  uint8_t half[2] = {10, 0};
  WriteRaw(p.a.get(), half, 2);
  p.a.Reset();
  v1::VmmReply got;
  absl::Status st = ReadVmmFrame(p.b.get(), got, 1000, 1000);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
}

}  // namespace
}  // namespace ferry
