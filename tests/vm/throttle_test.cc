// Auto-converge's throttle on both backends: it slows the guest, leaves Pause/Resume/Stop
// working, and the guest runs at full speed again once it is lifted.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "engine/base/clock.h"
#include "engine/guest/guest_abi.h"
#include "engine/guest/workload.h"
#include "engine/vm/micro_vm.h"
#include "engine/vm/synthetic_vm.h"
#include "tests/kvm/kvm_available.h"
#include "tests/vm/tiny_guest.h"

namespace ferry {
namespace {

using std::chrono::milliseconds;

// Progress over `windows` alternating pairs of `window_ms` windows, unthrottled then at
// `percent`: alternating keeps a busy host from favouring one side.
struct Progress {
  uint64_t free = 0, throttled = 0;
};
template <typename Counter>
Progress MeasureAlternating(Vm& vm, uint32_t percent, int windows, int window_ms, Counter counter) {
  Progress p;
  for (int i = 0; i < windows; ++i) {
    for (uint32_t share : {0u, percent}) {
      EXPECT_TRUE(vm.SetThrottle(share).ok());
      std::this_thread::sleep_for(milliseconds(15));  // let the new share settle
      auto before = counter();
      std::this_thread::sleep_for(milliseconds(window_ms));
      uint64_t done = counter() - before;  // in the counter's own width: wrap-safe
      (share == 0 ? p.free : p.throttled) += done;
    }
  }
  return p;
}

// ---- synthetic backend ----

VmSpec UnpacedSyntheticSpec() {
  VmSpec s;
  s.name = "synthetic-throttle";
  s.backend = Backend::kSynthetic;
  s.memory_bytes = 32ull << 20;
  s.vcpus = 1;
  s.workload.working_set_bytes = 8ull << 20;
  // Unpaced, so the rate is what the CPU gives it: a paced worker makes up up to
  // FW_MAX_BACKLOG_MS of missed writes, which would hide a 10 ms slice's sleep.
  s.workload.dirty_rate_mibps = 0;
  s.workload.pattern = "sequential";
  return s;
}

uint64_t PagesWritten(Vm& vm) {
  const auto* st = reinterpret_cast<const fw_state*>(vm.memory().data() + FERRY_GPA_WORKSET);
  uint64_t n = 0;
  for (uint32_t i = 0; i < vm.spec().vcpus; ++i) n += __atomic_load_n(&st->w[i].pages_written, __ATOMIC_RELAXED);
  return n;
}

TEST(SyntheticVmThrottle, HalfThrottleMeasurablyLowersTheWorkloadsRate) {
  auto vm = CreateSyntheticVm(UnpacedSyntheticSpec(), /*for_restore=*/false);
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_TRUE((*vm)->Start().ok());
  std::this_thread::sleep_for(milliseconds(30));
  Progress p = MeasureAlternating(**vm, 50, 3, 100, [&] { return PagesWritten(**vm); });
  ASSERT_GT(p.free, 0u) << "the workload made no progress unthrottled";
  EXPECT_GT(p.throttled, 0u) << "a throttled guest must keep running";
  // Ideally half; a busy host narrows the gap, so allow up to three quarters.
  EXPECT_LT(static_cast<double>(p.throttled), 0.75 * static_cast<double>(p.free))
      << "throttled " << p.throttled << " pages vs " << p.free << " unthrottled";
  EXPECT_EQ((*vm)->throttle_percent(), 50u);
  ASSERT_TRUE((*vm)->SetThrottle(0).ok());
  ASSERT_TRUE((*vm)->Stop().ok());
}

TEST(SyntheticVmThrottle, PausesPromptlyWhileThrottledAndRunsOnWhenLifted) {
  auto vm = CreateSyntheticVm(UnpacedSyntheticSpec(), /*for_restore=*/false);
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_EQ((*vm)->first_guest_entry_ns(), 0);
  int64_t before_start = MonotonicNanos();
  ASSERT_TRUE((*vm)->Start().ok());
  ASSERT_TRUE((*vm)->SetThrottle(99).ok());
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_GE((*vm)->first_guest_entry_ns(), before_start);
  Stopwatch pause;
  ASSERT_TRUE((*vm)->Pause().ok());
  EXPECT_LT(pause.ElapsedMillis(), 100) << "Pause waited out the throttle";
  uint64_t at_pause = PagesWritten(**vm);
  std::this_thread::sleep_for(milliseconds(30));
  EXPECT_EQ(PagesWritten(**vm), at_pause) << "a worker ran while paused";
  ASSERT_TRUE((*vm)->SetThrottle(0).ok());  // allowed while paused
  int64_t before_resume = MonotonicNanos();
  ASSERT_TRUE((*vm)->Resume().ok());
  std::this_thread::sleep_for(milliseconds(30));
  EXPECT_GT(PagesWritten(**vm), at_pause);
  EXPECT_GE((*vm)->first_guest_entry_ns(), before_resume) << "first entry is stamped afresh after Resume";
  ASSERT_TRUE((*vm)->Stop().ok());
}

TEST(SyntheticVmThrottle, RefusesMoreThan99Percent) {
  auto vm = CreateSyntheticVm(UnpacedSyntheticSpec(), /*for_restore=*/false);
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_TRUE((*vm)->SetThrottle(30).ok());
  absl::Status st = (*vm)->SetThrottle(100);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("99"), std::string_view::npos) << st;
  EXPECT_EQ((*vm)->throttle_percent(), 30u) << "a refused throttle leaves the old one";
}

// ---- KVM backend ----

constexpr uint32_t kCounterGpa = 0x300000;

VmSpec TinySpec(uint32_t vcpus) {
  VmSpec spec;
  spec.name = "tiny-throttle";
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

TEST(MicroVmThrottle, PausesPromptlyWhileThrottledAndRunsOnWhenLifted) {
  FERRY_SKIP_WITHOUT_KVM();
  auto vm = CreateMicroVmWithCode(TinySpec(2), tiny_guest::kLoadGpa, tiny_guest::CountForever(kCounterGpa));
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_EQ((*vm)->first_guest_entry_ns(), 0);
  int64_t before_start = MonotonicNanos();
  ASSERT_TRUE((*vm)->Start().ok());
  ASSERT_TRUE((*vm)->SetThrottle(50).ok());
  EXPECT_EQ((*vm)->throttle_percent(), 50u);
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_GE((*vm)->first_guest_entry_ns(), before_start);
  uint32_t throttled = Counter(**vm);
  std::this_thread::sleep_for(milliseconds(30));
  EXPECT_NE(Counter(**vm), throttled) << "a throttled guest must keep running";
  Stopwatch pause;
  ASSERT_TRUE((*vm)->Pause().ok());
  EXPECT_LT(pause.ElapsedMillis(), 100) << "Pause waited out the throttle";
  EXPECT_EQ((*vm)->run_state(), VmRunState::kPaused);
  uint32_t at_pause = Counter(**vm);
  std::this_thread::sleep_for(milliseconds(30));
  EXPECT_EQ(Counter(**vm), at_pause) << "a vCPU ran while paused (the throttle kicker woke it?)";
  int64_t before_resume = MonotonicNanos();
  ASSERT_TRUE((*vm)->Resume().ok());
  ASSERT_TRUE((*vm)->SetThrottle(0).ok());
  std::this_thread::sleep_for(milliseconds(30));
  EXPECT_NE(Counter(**vm), at_pause) << "the guest did not run on after SetThrottle(0)";
  EXPECT_GE((*vm)->first_guest_entry_ns(), before_resume) << "first entry is stamped afresh after Resume";
  EXPECT_EQ((*vm)->SetThrottle(100).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*vm)->Stop().ok());
  EXPECT_EQ((*vm)->run_state(), VmRunState::kStopped);
}

TEST(MicroVmThrottle, HalfThrottleMeasurablySlowsTheGuest) {
  FERRY_SKIP_WITHOUT_KVM();
  auto vm = CreateMicroVmWithCode(TinySpec(1), tiny_guest::kLoadGpa, tiny_guest::CountForever(kCounterGpa));
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_TRUE((*vm)->Start().ok());
  std::this_thread::sleep_for(milliseconds(20));
  // The 32-bit counter wraps every few seconds; a 100 ms window stays well under one wrap.
  Progress p = MeasureAlternating(**vm, 50, 3, 100, [&] { return Counter(**vm); });
  ASSERT_GT(p.free, 0u);
  EXPECT_LT(static_cast<double>(p.throttled), 0.75 * static_cast<double>(p.free))
      << "throttled " << p.throttled << " increments vs " << p.free << " unthrottled";
  ASSERT_TRUE((*vm)->Stop().ok());
}

TEST(MicroVmThrottle, StopEndsAThrottledVm) {
  FERRY_SKIP_WITHOUT_KVM();
  auto vm = CreateMicroVmWithCode(TinySpec(2), tiny_guest::kLoadGpa, tiny_guest::CountForever(kCounterGpa));
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_TRUE((*vm)->SetThrottle(90).ok());  // before Start: applied once the vCPUs run
  ASSERT_TRUE((*vm)->Start().ok());
  std::this_thread::sleep_for(milliseconds(30));
  EXPECT_NE(Counter(**vm), 0u);
  Stopwatch stop;
  ASSERT_TRUE((*vm)->Stop().ok());
  EXPECT_LT(stop.ElapsedMillis(), 200);
  EXPECT_EQ((*vm)->run_state(), VmRunState::kStopped);
}

}  // namespace
}  // namespace ferry
