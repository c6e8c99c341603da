#include "engine/state/state_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace ferry {
namespace {

v1::VmState SampleState() {
  v1::VmState s;
  s.set_backend(v1::BACKEND_KIND_KVM);
  s.set_memory_bytes(64ull << 20);
  s.set_vcpu_count(2);
  s.set_guest_cmdline("ws=8 rate=50 pattern=random seed=1 tick_ms=0 ncpu=2");
  for (uint32_t i = 0; i < 2; ++i) {
    v1::VcpuState* v = s.add_vcpus();
    v->set_index(i);
    v->set_regs(std::string(144, static_cast<char>(i + 1)));
    v1::MsrEntry* m = v->add_msrs();
    m->set_index(0x10);
    m->set_data(123456789 + i);
  }
  s.mutable_status()->set_heartbeats(42);
  return s;
}

TEST(StateFile, RoundTripsAVmState) {
  v1::VmState in = SampleState();
  auto out = DecodeVmState(EncodeVmState(in));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->SerializeAsString(), in.SerializeAsString());
}

TEST(StateFile, HeaderIsMagicVersionLengthChecksum) {
  std::string enc = EncodeVmState(SampleState());
  ASSERT_GE(enc.size(), kStateHeaderBytes);
  EXPECT_EQ(enc.substr(0, 8), "FERRYVMS");
  EXPECT_EQ(static_cast<uint8_t>(enc[8]), kStateMajorVersion);
  EXPECT_EQ(enc.size() - kStateHeaderBytes, SampleState().SerializeAsString().size());
}

TEST(StateFile, TruncatedStateIsAClearError) {
  std::string enc = EncodeVmState(SampleState());
  for (size_t len : {size_t{0}, size_t{10}, size_t{kStateHeaderBytes}, enc.size() - 1}) {
    auto out = DecodeVmState(absl::string_view(enc.data(), len));
    ASSERT_FALSE(out.ok()) << "length " << len;
    EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss) << out.status();
    EXPECT_NE(out.status().message().find("truncated"), std::string::npos) << out.status();
  }
}

TEST(StateFile, CorruptedPayloadFailsTheChecksum) {
  std::string enc = EncodeVmState(SampleState());
  enc[kStateHeaderBytes + 20] ^= 0x01;
  auto out = DecodeVmState(enc);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(out.status().message().find("checksum"), std::string::npos) << out.status();
}

TEST(StateFile, UnknownMajorVersionIsRefused) {
  std::string enc = EncodeVmState(SampleState());
  enc[8] = static_cast<char>(kStateMajorVersion + 1);
  auto out = DecodeVmState(enc);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(out.status().message().find("version 2.0"), std::string::npos) << out.status();
}

TEST(StateFile, NewerMinorVersionIsAccepted) {
  std::string enc = EncodeVmState(SampleState());
  enc[10] = 7;
  EXPECT_TRUE(DecodeVmState(enc).ok());
}

TEST(StateFile, OversizedPayloadIsRefusedBeforeReading) {
  std::string enc = EncodeVmState(SampleState());
  uint64_t huge = kMaxStatePayloadBytes + 1;
  for (int i = 0; i < 8; ++i) enc[16 + i] = static_cast<char>((huge >> (8 * i)) & 0xff);
  auto out = DecodeVmState(enc);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("exceeds the cap"), std::string::npos) << out.status();
}

TEST(StateFile, WrongMagicIsRefused) {
  std::string enc = EncodeVmState(SampleState());
  enc[0] = 'X';
  auto out = DecodeVmState(enc);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("magic"), std::string::npos) << out.status();
}

TEST(StateFile, FileRoundTripAndMissingFile) {
  auto dir = std::filesystem::temp_directory_path() / ("ferry-state-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "state.bin").string();
  ASSERT_TRUE(WriteStateFile(path, SampleState()).ok());
  auto back = ReadStateFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->status().heartbeats(), 42u);
  auto missing = ReadStateFile((dir / "nope.bin").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.bin"), std::string::npos) << missing.status();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ferry
