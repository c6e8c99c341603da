// A synthetic VM restored from a crafted memory image: its workload runs in this process and
// follows offsets stored in guest memory, so every crafted field is refused at Start with a clear
// error, never followed (no crash), and another VM in the process keeps running.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <thread>

#include "engine/guest/guest_abi.h"
#include "engine/guest/workload.h"
#include "engine/vm/synthetic_vm.h"

namespace ferry {
namespace {

VmSpec Spec(const std::string& name) {
  VmSpec s;
  s.name = name;
  s.backend = Backend::kSynthetic;
  s.memory_bytes = 32ull << 20;
  s.vcpus = 2;
  s.workload.working_set_bytes = 4ull << 20;
  s.workload.dirty_rate_mibps = 20;
  s.workload.pattern = "sequential";
  return s;
}

class CraftedImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto src = CreateVmForBoot(Spec("source"));
    ASSERT_TRUE(src.ok()) << src.status();
    source_ = std::move(*src);
    ASSERT_TRUE(source_->Start().ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ASSERT_TRUE(source_->Pause().ok());
    auto state = source_->SaveState();
    ASSERT_TRUE(state.ok()) << state.status();
    state_ = *state;
    // The bystander: another VM of the same agent process, running throughout.
    auto other = CreateVmForBoot(Spec("bystander"));
    ASSERT_TRUE(other.ok()) << other.status();
    bystander_ = std::move(*other);
    ASSERT_TRUE(bystander_->Start().ok());
  }
  void TearDown() override {
    if (bystander_) {
      const uint64_t beats = bystander_->health().heartbeats;
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      EXPECT_GT(bystander_->health().heartbeats, beats) << "the other VM stopped";
      EXPECT_EQ(bystander_->health().corruptions, 0u);
      (void)bystander_->Stop();
    }
    if (source_) (void)source_->Stop();
  }

  // A VM built for restore from the source's memory as `craft` altered it; Start's answer.
  absl::Status StartCrafted(const std::function<void(fw_state&)>& craft) {
    auto dst = CreateVmForRestore(Spec("crafted"));
    if (!dst.ok()) return dst.status();
    std::memcpy((*dst)->memory().data(), source_->memory().data(), source_->memory().size());
    craft(*reinterpret_cast<fw_state*>((*dst)->memory().data() + FERRY_GPA_WORKSET));
    if (absl::Status st = (*dst)->RestoreState(state_); !st.ok()) return st;
    absl::Status st = (*dst)->Start();
    if (st.ok()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      (void)(*dst)->Stop();
    }
    return st;
  }

  std::unique_ptr<Vm> source_, bystander_;
  v1::VmState state_;
};

TEST_F(CraftedImageTest, AnUntouchedImageStarts) {
  EXPECT_TRUE(StartCrafted([](fw_state&) {}).ok());
}

TEST_F(CraftedImageTest, EveryCraftedOffsetIsRefusedAtStart) {
  const std::vector<std::pair<const char*, std::function<void(fw_state&)>>> crafts = {
      {"generation table", [](fw_state& s) { s.gen_offset = 1ull << 40; }},
      {"pages", [](fw_state& s) { s.pages_offset = ~0ull - 4096; }},
      {"working set", [](fw_state& s) { s.cfg.ws_pages = 1ull << 50; }},
      {"working set", [](fw_state& s) { s.cfg.ws_pages = ~0ull; }},
      {"outside the working set", [](fw_state& s) { s.w[1].first_page = 1ull << 40; }},
      {"outside the working set", [](fw_state& s) { s.w[0].num_pages = ~0ull; }},
      {"cursor", [](fw_state& s) { s.w[0].cursor = s.w[0].num_pages; }},
      {"cursor", [](fw_state& s) { s.w[1].sweep_cursor = 1ull << 33; }},
      {"pattern", [](fw_state& s) { s.cfg.pattern = 77; }},
      {"no workload state", [](fw_state& s) { s.nworkers = 1000; }},
      {"no workload state", [](fw_state& s) { s.magic = 0; }},
  };
  for (const auto& [what, craft] : crafts) {
    absl::Status st = StartCrafted(craft);
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << what;
    EXPECT_NE(st.message().find(what), std::string::npos) << st.message();
  }
}

}  // namespace
}  // namespace ferry
