// The microVM's vCPU state machine and state capture/restore, on tiny hand-written guests.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "engine/base/clock.h"
#include "engine/vm/micro_vm.h"
#include "tests/kvm/kvm_available.h"
#include "tests/vm/tiny_guest.h"

namespace ferry {
namespace {

using std::chrono::milliseconds;
constexpr uint32_t kCounterGpa = 0x300000;

VmSpec TinySpec(uint32_t vcpus = 1) {
  VmSpec spec;
  spec.name = "tiny";
  spec.memory_bytes = 16ull << 20;
  spec.vcpus = vcpus;
  spec.workload.working_set_bytes = 1ull << 20;
  return spec;
}

uint32_t Counter(Vm& vm) {
  uint32_t v;
  std::memcpy(&v, vm.memory().data() + kCounterGpa, 4);
  return v;
}

TEST(MicroVm, PauseParksEveryVcpuAndResumeContinues) {
  FERRY_SKIP_WITHOUT_KVM();
  auto vm = CreateMicroVmWithCode(TinySpec(2), tiny_guest::kLoadGpa, tiny_guest::CountForever(kCounterGpa));
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_TRUE((*vm)->Start().ok());
  std::this_thread::sleep_for(milliseconds(30));
  ASSERT_TRUE((*vm)->Pause().ok());
  EXPECT_EQ((*vm)->run_state(), VmRunState::kPaused);
  uint32_t at_pause = Counter(**vm);
  EXPECT_GT(at_pause, 0u);
  std::this_thread::sleep_for(milliseconds(30));
  EXPECT_EQ(Counter(**vm), at_pause) << "a vCPU ran while paused";
  ASSERT_TRUE((*vm)->Resume().ok());
  std::this_thread::sleep_for(milliseconds(30));
  EXPECT_GT(Counter(**vm), at_pause);
  ASSERT_TRUE((*vm)->Stop().ok());
  EXPECT_EQ((*vm)->run_state(), VmRunState::kStopped);
}

TEST(MicroVm, SaveStateIsRefusedUnlessPaused) {
  FERRY_SKIP_WITHOUT_KVM();
  auto vm = CreateMicroVmWithCode(TinySpec(), tiny_guest::kLoadGpa, tiny_guest::CountForever(kCounterGpa));
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_EQ((*vm)->SaveState().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*vm)->Start().ok());
  auto running = (*vm)->SaveState();
  EXPECT_EQ(running.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(running.status().message().find("pause"), std::string::npos) << running.status();
  ASSERT_TRUE((*vm)->Pause().ok());
  EXPECT_TRUE((*vm)->SaveState().ok());
}

TEST(MicroVm, RestoredVmContinuesFromTheSavedRegistersAndTsc) {
  FERRY_SKIP_WITHOUT_KVM();
  auto src = CreateMicroVmWithCode(TinySpec(2), tiny_guest::kLoadGpa, tiny_guest::CountForever(kCounterGpa));
  ASSERT_TRUE(src.ok()) << src.status();
  ASSERT_TRUE((*src)->Start().ok());
  std::this_thread::sleep_for(milliseconds(30));
  ASSERT_TRUE((*src)->Pause().ok());
  auto state = (*src)->SaveState();
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_EQ(state->vcpus_size(), 2);
  uint64_t saved_tsc = 0;
  for (const auto& m : state->vcpus(0).msrs())
    if (m.index() == 0x10) saved_tsc = m.data();
  ASSERT_NE(saved_tsc, 0u) << "IA32_TSC not saved";
  uint32_t at_save = Counter(**src);
  ASSERT_TRUE((*src)->Stop().ok());

  auto dst = CreateMicroVm(TinySpec(2), /*for_restore=*/true);
  ASSERT_TRUE(dst.ok()) << dst.status();
  EXPECT_EQ((*dst)->Start().code(), absl::StatusCode::kFailedPrecondition) << "started without state";
  std::memcpy((*dst)->memory().data(), (*src)->memory().data(), (*src)->memory().size());
  ASSERT_TRUE((*dst)->RestoreState(*state).ok());
  ASSERT_TRUE((*dst)->Start().ok());
  std::this_thread::sleep_for(milliseconds(30));
  ASSERT_TRUE((*dst)->Pause().ok());
  EXPECT_GT(Counter(**dst), at_save) << "restored guest did not run on from the saved state";
  auto after = (*dst)->SaveState();
  ASSERT_TRUE(after.ok()) << after.status();
  uint64_t tsc_after = 0;
  for (const auto& m : after->vcpus(0).msrs())
    if (m.index() == 0x10) tsc_after = m.data();
  // The TSC continues from its saved value: it moved on by about the 30 ms run, not by the
  // host's uptime since (no jump).
  EXPECT_GT(tsc_after, saved_tsc);
  EXPECT_LT(tsc_after - saved_tsc, uint64_t{after->vcpus(0).tsc_khz()} * 2000) << "TSC jumped > 2 s";
}

TEST(MicroVm, RestoreRefusesABlobOfTheWrongSizeNamingTheField) {
  FERRY_SKIP_WITHOUT_KVM();
  auto src = CreateMicroVmWithCode(TinySpec(), tiny_guest::kLoadGpa, tiny_guest::CountForever(kCounterGpa));
  ASSERT_TRUE(src.ok()) << src.status();
  ASSERT_TRUE((*src)->Start().ok());
  ASSERT_TRUE((*src)->Pause().ok());
  auto state = (*src)->SaveState();
  ASSERT_TRUE(state.ok()) << state.status();
  state->mutable_vcpus(0)->mutable_sregs()->resize(100);
  auto dst = CreateMicroVm(TinySpec(), /*for_restore=*/true);
  ASSERT_TRUE(dst.ok()) << dst.status();
  absl::Status st = (*dst)->RestoreState(*state);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("'sregs'"), std::string::npos) << st;
  EXPECT_NE(st.message().find("kvm_sregs"), std::string::npos) << st;
}

TEST(MicroVm, RestoreRefusesAStateOfADifferentShape) {
  FERRY_SKIP_WITHOUT_KVM();
  auto src = CreateMicroVmWithCode(TinySpec(2), tiny_guest::kLoadGpa, tiny_guest::CountForever(kCounterGpa));
  ASSERT_TRUE(src.ok()) << src.status();
  ASSERT_TRUE((*src)->Start().ok());
  ASSERT_TRUE((*src)->Pause().ok());
  auto state = (*src)->SaveState();
  ASSERT_TRUE(state.ok()) << state.status();
  auto dst = CreateMicroVm(TinySpec(1), /*for_restore=*/true);
  ASSERT_TRUE(dst.ok()) << dst.status();
  absl::Status st = (*dst)->RestoreState(*state);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("vCPUs"), std::string::npos) << st;
}

TEST(MicroVm, BadSpecsAreClearErrors) {
  FERRY_SKIP_WITHOUT_KVM();
  VmSpec too_big = TinySpec();
  too_big.memory_bytes = 2ull << 30;
  too_big.workload.working_set_bytes = 4ull << 30;
  auto ws = CreateMicroVm(too_big, false);
  ASSERT_FALSE(ws.ok());
  EXPECT_NE(ws.status().message().find("working set"), std::string::npos) << ws.status();

  VmSpec vcpus = TinySpec(FERRY_MAX_VCPUS + 1);
  auto v = CreateMicroVm(vcpus, false);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("vcpus"), std::string::npos) << v.status();

  VmSpec huge = TinySpec();
  huge.memory_bytes = 1ull << 42;
  auto h = CreateMicroVm(huge, false);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(h.status().message().find("physical memory"), std::string::npos) << h.status();

  VmSpec no_image = TinySpec();
  no_image.image_path = "/nonexistent/ferry-guest.elf";
  auto img = CreateMicroVm(no_image, false);
  ASSERT_FALSE(img.ok());
  EXPECT_EQ(img.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(img.status().message().find("/nonexistent/ferry-guest.elf"), std::string::npos) << img.status();
}

}  // namespace
}  // namespace ferry
