// The real built-in guest across a snapshot: restored in a fresh VM it continues its heartbeat
// with no corruption; with one working-set page altered it must report CORRUPTION.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <thread>

#include "engine/base/clock.h"
#include "engine/guest/workload.h"
#include "engine/state/snapshot.h"
#include "engine/vm/multiboot_loader.h"
#include "engine/vm/vm.h"
#include "tests/kvm/kvm_available.h"

namespace ferry {
namespace {

VmSpec GuestSpec() {
  VmSpec spec;
  spec.name = "snap";
  spec.memory_bytes = 32ull << 20;
  spec.vcpus = 1;
  spec.workload.working_set_bytes = 1ull << 20;
  spec.workload.dirty_rate_mibps = 20;
  spec.image_path = DefaultGuestImagePath();
  return spec;
}

GuestHealth WaitFor(Vm& vm, int64_t timeout_ms, const std::function<bool(const GuestHealth&)>& done) {
  Stopwatch sw;
  GuestHealth h = vm.health();
  while (!done(h) && sw.ElapsedMillis() < timeout_ms && vm.run_state() != VmRunState::kStopped) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    h = vm.health();
  }
  return h;
}

class MicroSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_SKIP_WITHOUT_KVM();
    ASSERT_TRUE(std::filesystem::exists(GuestSpec().image_path))
        << "guest image " << GuestSpec().image_path << " missing: build ferry_guest";
    char tmpl[] = "/tmp/ferry-snap-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Boots the guest, lets it beat a few times, pauses and snapshots it; returns its health then.
  GuestHealth SnapshotRunningGuest() {
    auto vm = CreateVmForBoot(GuestSpec());
    EXPECT_TRUE(vm.ok()) << vm.status();
    if (!vm.ok()) return {};
    EXPECT_TRUE((*vm)->Start().ok());
    GuestHealth h = WaitFor(**vm, 8000, [](const GuestHealth& h) { return h.heartbeats >= 3; });
    EXPECT_GE(h.heartbeats, 3u) << "the guest did not beat before the snapshot";
    EXPECT_TRUE((*vm)->Pause().ok());
    GuestHealth at_pause = (*vm)->health();
    auto stats = SaveSnapshot(**vm, dir_);
    EXPECT_TRUE(stats.ok()) << stats.status();
    EXPECT_TRUE((*vm)->Stop().ok());
    return at_pause;
  }

  std::unique_ptr<Vm> RestoreFromSnapshot(bool alter_one_page) {
    auto spec = ReadSnapshotSpec(dir_);
    EXPECT_TRUE(spec.ok()) << spec.status();
    if (!spec.ok()) return nullptr;
    auto vm = CreateVmForRestore(*spec);
    EXPECT_TRUE(vm.ok()) << vm.status();
    if (!vm.ok()) return nullptr;
    absl::Status st = RestoreSnapshot(dir_, **vm);
    EXPECT_TRUE(st.ok()) << st;
    if (alter_one_page) {
      uint8_t* ws = (*vm)->memory().data() + FERRY_GPA_WORKSET;
      auto* state = reinterpret_cast<fw_state*>(ws);
      auto* gens = reinterpret_cast<uint32_t*>(ws + state->gen_offset);
      uint64_t page = 0;
      while (page < state->cfg.ws_pages && gens[page] == 0) ++page;
      EXPECT_LT(page, state->cfg.ws_pages) << "the guest had written no page";
      ws[state->pages_offset + page * kPageSize + 40] ^= 0x5a;
    }
    EXPECT_TRUE((*vm)->Start().ok());
    return std::move(*vm);
  }

  std::string dir_;
};

TEST_F(MicroSnapshotTest, RestoredGuestContinuesItsHeartbeatWithoutCorruption) {
  GuestHealth before = SnapshotRunningGuest();
  std::unique_ptr<Vm> vm = RestoreFromSnapshot(/*alter_one_page=*/false);
  ASSERT_NE(vm, nullptr);
  EXPECT_GE(vm->health().heartbeats, before.heartbeats) << "counts travel with the state";
  GuestHealth after = WaitFor(*vm, 8000, [&](const GuestHealth& h) { return h.heartbeats >= before.heartbeats + 3; });
  EXPECT_GE(after.heartbeats, before.heartbeats + 3) << "restored guest did not keep beating";
  EXPECT_GT(after.last_heartbeat_value, before.last_heartbeat_value) << "the guest's counter restarted";
  EXPECT_EQ(after.corruptions, 0u) << (after.corruption_reports.empty() ? "" : after.corruption_reports[0]);
  EXPECT_FALSE(after.shut_down) << "guest exited with code " << after.exit_code;
  EXPECT_TRUE(vm->Stop().ok());
}

TEST_F(MicroSnapshotTest, AlteredWorkingSetPageIsReportedAsCorruption) {
  SnapshotRunningGuest();
  std::unique_ptr<Vm> vm = RestoreFromSnapshot(/*alter_one_page=*/true);
  ASSERT_NE(vm, nullptr);
  GuestHealth after = WaitFor(*vm, 10000, [](const GuestHealth& h) { return h.corruptions > 0; });
  EXPECT_GT(after.corruptions, 0u) << "the guest missed an altered page";
  EXPECT_TRUE(vm->Stop().ok());
}

TEST_F(MicroSnapshotTest, SnapshotOfARunningVmIsRefused) {
  auto vm = CreateVmForBoot(GuestSpec());
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_TRUE((*vm)->Start().ok());
  auto stats = SaveSnapshot(**vm, dir_);
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kFailedPrecondition) << stats.status();
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(dir_) / kSnapshotStateFile));
}

TEST_F(MicroSnapshotTest, CorruptedStateFileIsRefusedBeforeTheVmRuns) {
  SnapshotRunningGuest();
  std::string path = (std::filesystem::path(dir_) / kSnapshotStateFile).string();
  {
    FILE* f = fopen(path.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    fseek(f, 100, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 100, SEEK_SET);
    fputc(c ^ 0xff, f);
    fclose(f);
  }
  auto spec = ReadSnapshotSpec(dir_);
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto vm = CreateVmForRestore(*spec);
  ASSERT_TRUE(vm.ok()) << vm.status();
  absl::Status st = RestoreSnapshot(dir_, **vm);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_NE(st.message().find("checksum"), std::string::npos) << st;
  EXPECT_EQ((*vm)->Start().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace ferry
