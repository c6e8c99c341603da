// The microVM's dirty log: no page the guest wrote may be missing, and none it did not write
// may be reported.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "engine/base/clock.h"
#include "engine/vm/micro_vm.h"
#include "tests/kvm/kvm_available.h"
#include "tests/vm/tiny_guest.h"

namespace ferry {
namespace {

VmSpec TinySpec() {
  VmSpec spec;
  spec.name = "tiny";
  spec.memory_bytes = 16ull << 20;
  spec.workload.working_set_bytes = 1ull << 20;
  return spec;
}

bool WaitForState(Vm& vm, VmRunState want, int64_t timeout_ms = 3000) {
  Stopwatch sw;
  while (vm.run_state() != want) {
    if (sw.ElapsedMillis() > timeout_ms) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

std::vector<uint64_t> SetPages(const DirtyBitmap& b) {
  std::vector<uint64_t> pages;
  for (uint64_t p = 0; p < b.num_pages(); ++p)
    if (b.Test(p)) pages.push_back(p);
  return pages;
}

const std::vector<uint32_t> kWrites = {0x200000, 0x200ff0, 0x203004, 0x500000, 0x7ff000, 0xfff000};
const std::vector<uint64_t> kWrittenPages = {0x200, 0x203, 0x500, 0x7ff, 0xfff};

TEST(MicroVmDirtyLog, ReportsExactlyThePagesTheGuestWrote) {
  FERRY_SKIP_WITHOUT_KVM();
  auto vm = CreateMicroVmWithCode(TinySpec(), tiny_guest::kLoadGpa, tiny_guest::WriteDwordsThenShutdown(kWrites));
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_TRUE((*vm)->EnableDirtyTracking().ok());
  ASSERT_TRUE((*vm)->Start().ok());
  ASSERT_TRUE(WaitForState(**vm, VmRunState::kStopped)) << "guest did not shut down";
  EXPECT_TRUE((*vm)->health().shut_down);

  DirtyBitmap dirty((*vm)->memory().num_pages());
  ASSERT_TRUE((*vm)->CollectDirtyPages(dirty).ok());
  EXPECT_EQ(SetPages(dirty), kWrittenPages);
  for (uint32_t a : kWrites) {
    uint32_t v;
    std::memcpy(&v, (*vm)->memory().data() + a, 4);
    EXPECT_EQ(v, a ^ 0x5a5a5a5au) << "at 0x" << std::hex << a;
  }

  DirtyBitmap again((*vm)->memory().num_pages());
  ASSERT_TRUE((*vm)->CollectDirtyPages(again).ok());
  EXPECT_TRUE(again.Empty()) << again.Count() << " pages reported with no writes";
}

TEST(MicroVmDirtyLog, PagesSurviveDisablingTrackingBeforeTheCollect) {
  FERRY_SKIP_WITHOUT_KVM();
  auto vm = CreateMicroVmWithCode(TinySpec(), tiny_guest::kLoadGpa, tiny_guest::WriteDwordsThenShutdown(kWrites));
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_TRUE((*vm)->EnableDirtyTracking().ok());
  ASSERT_TRUE((*vm)->Start().ok());
  ASSERT_TRUE(WaitForState(**vm, VmRunState::kStopped));
  ASSERT_TRUE((*vm)->DisableDirtyTracking().ok());
  DirtyBitmap dirty((*vm)->memory().num_pages());
  ASSERT_TRUE((*vm)->CollectDirtyPages(dirty).ok());
  EXPECT_EQ(SetPages(dirty), kWrittenPages);
}

TEST(MicroVmDirtyLog, WrongSizedBitmapIsRefused) {
  FERRY_SKIP_WITHOUT_KVM();
  auto vm = CreateMicroVmWithCode(TinySpec(), tiny_guest::kLoadGpa, tiny_guest::WriteDwordsThenShutdown({}));
  ASSERT_TRUE(vm.ok()) << vm.status();
  DirtyBitmap wrong(7);
  absl::Status st = (*vm)->CollectDirtyPages(wrong);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
}

}  // namespace
}  // namespace ferry
