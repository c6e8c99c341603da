// The microVM's dirty log: no page the guest wrote may be missing, and none it did not write
// may be reported. Every test runs on each dirty-log path (KVM_GET_DIRTY_LOG clearing as old
// kernels do, manual protection with and without KVM_DIRTY_LOG_INITIALLY_SET), forced through
// MicroVmOptions, with a small clear chunk so a collect spans many KVM_CLEAR_DIRTY_LOG calls.
#include <gtest/gtest.h>
#include <linux/kvm.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "engine/base/clock.h"
#include "engine/kvm/kvm_system.h"
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

uint32_t Dword(Vm& vm, uint32_t gpa) {
  std::atomic_ref<uint32_t> v(*reinterpret_cast<uint32_t*>(vm.memory().data() + gpa));
  return v.load();
}

bool WaitForDword(Vm& vm, uint32_t gpa, uint32_t want, int64_t timeout_ms = 3000) {
  Stopwatch sw;
  while (Dword(vm, gpa) != want) {
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

struct PathCase {
  const char* name;
  uint64_t protect_flags;  // MicroVmOptions::dirty_log_protect_flags
  DirtyLogPath path;
  friend void PrintTo(const PathCase& c, std::ostream* os) { *os << c.name; }
};

class MicroVmDirtyLog : public ::testing::TestWithParam<PathCase> {
 protected:
  void SetUp() override {
    FERRY_SKIP_WITHOUT_KVM();
    auto kvm = KvmSystem::Open();
    ASSERT_TRUE(kvm.ok()) << kvm.status();
    uint64_t offered = static_cast<uint64_t>(kvm->CheckExtension(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2));
    if ((GetParam().protect_flags & offered) != GetParam().protect_flags) {
      GTEST_SKIP() << "this KVM offers KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 flags 0x" << std::hex << offered
                   << ", the " << GetParam().name << " path needs 0x" << GetParam().protect_flags;
    }
    options_.dirty_log_protect_flags = GetParam().protect_flags;
    options_.dirty_clear_chunk_bytes = 256 << 10;  // 64 pages: a 16 MiB guest is 64 chunks
  }

  // A VM running `code`, its dirty-log path checked to be the one this case forces.
  std::unique_ptr<Vm> Boot(const std::vector<uint8_t>& code) {
    auto vm = CreateMicroVmWithCode(TinySpec(), tiny_guest::kLoadGpa, code, options_);
    EXPECT_TRUE(vm.ok()) << vm.status();
    if (!vm.ok()) return nullptr;
    auto path = MicroVmDirtyLogPath(**vm);
    EXPECT_TRUE(path.ok()) << path.status();
    EXPECT_EQ(*path, GetParam().path) << "the VM did not take the forced dirty-log path";
    return std::move(*vm);
  }

  MicroVmOptions options_;
};

TEST_P(MicroVmDirtyLog, ReportsExactlyThePagesTheGuestWrote) {
  std::unique_ptr<Vm> vm = Boot(tiny_guest::WriteDwordsThenShutdown(kWrites));
  ASSERT_NE(vm, nullptr);
  ASSERT_TRUE(vm->EnableDirtyTracking().ok());
  ASSERT_TRUE(vm->Start().ok());
  ASSERT_TRUE(WaitForState(*vm, VmRunState::kStopped)) << "guest did not shut down";
  EXPECT_TRUE(vm->health().shut_down);

  DirtyBitmap dirty(vm->memory().num_pages());
  ASSERT_TRUE(vm->CollectDirtyPages(dirty).ok());
  EXPECT_EQ(SetPages(dirty), kWrittenPages);
  for (uint32_t a : kWrites) EXPECT_EQ(Dword(*vm, a), a ^ 0x5a5a5a5au) << "at 0x" << std::hex << a;

  DirtyBitmap again(vm->memory().num_pages());
  ASSERT_TRUE(vm->CollectDirtyPages(again).ok());
  EXPECT_TRUE(again.Empty()) << again.Count() << " pages reported with no writes";
}

// After a collect the pages are protected again: rewriting them (and writing new ones) is seen
// by the next collect, and nothing else is.
TEST_P(MicroVmDirtyLog, PagesWrittenAgainAfterACollectAreReportedAgain) {
  constexpr uint32_t kFlag = 0x900000;
  const std::vector<uint32_t> second = {0x200008, 0x500100, 0x600000, 0xc00000};
  std::unique_ptr<Vm> vm = Boot(tiny_guest::WriteWaitWriteThenShutdown(kWrites, kFlag, second));
  ASSERT_NE(vm, nullptr);
  ASSERT_TRUE(vm->EnableDirtyTracking().ok());
  ASSERT_TRUE(vm->Start().ok());
  ASSERT_TRUE(WaitForDword(*vm, kWrites.back(), kWrites.back() ^ 0x5a5a5a5au)) << "first writes not seen";

  DirtyBitmap dirty(vm->memory().num_pages());
  ASSERT_TRUE(vm->CollectDirtyPages(dirty).ok());
  EXPECT_EQ(SetPages(dirty), kWrittenPages);
  DirtyBitmap idle(vm->memory().num_pages());
  ASSERT_TRUE(vm->CollectDirtyPages(idle).ok());
  EXPECT_TRUE(idle.Empty()) << idle.Count() << " pages reported while the guest only read";

  // The VMM's own write to the flag is not the guest's and is not in KVM's log.
  std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(vm->memory().data() + kFlag)).store(1);
  ASSERT_TRUE(WaitForState(*vm, VmRunState::kStopped)) << "guest did not shut down";
  DirtyBitmap rewritten(vm->memory().num_pages());
  ASSERT_TRUE(vm->CollectDirtyPages(rewritten).ok());
  EXPECT_EQ(SetPages(rewritten), (std::vector<uint64_t>{0x200, 0x500, 0x600, 0xc00}));
}

TEST_P(MicroVmDirtyLog, PagesSurviveDisablingTrackingBeforeTheCollect) {
  std::unique_ptr<Vm> vm = Boot(tiny_guest::WriteDwordsThenShutdown(kWrites));
  ASSERT_NE(vm, nullptr);
  ASSERT_TRUE(vm->EnableDirtyTracking().ok());
  ASSERT_TRUE(vm->Start().ok());
  ASSERT_TRUE(WaitForState(*vm, VmRunState::kStopped));
  ASSERT_TRUE(vm->DisableDirtyTracking().ok());
  DirtyBitmap dirty(vm->memory().num_pages());
  ASSERT_TRUE(vm->CollectDirtyPages(dirty).ok());
  EXPECT_EQ(SetPages(dirty), kWrittenPages);
}

// Enabling again after a disable starts a fresh log (INITIALLY_SET's all-set log is cleared).
TEST_P(MicroVmDirtyLog, ReenabledTrackingStartsEmpty) {
  std::unique_ptr<Vm> vm = Boot(tiny_guest::WriteDwordsThenShutdown(kWrites));
  ASSERT_NE(vm, nullptr);
  ASSERT_TRUE(vm->Start().ok());
  ASSERT_TRUE(WaitForState(*vm, VmRunState::kStopped));
  ASSERT_TRUE(vm->EnableDirtyTracking().ok());
  ASSERT_TRUE(vm->DisableDirtyTracking().ok());
  ASSERT_TRUE(vm->EnableDirtyTracking().ok());
  DirtyBitmap dirty(vm->memory().num_pages());
  ASSERT_TRUE(vm->CollectDirtyPages(dirty).ok());
  EXPECT_TRUE(dirty.Empty()) << dirty.Count() << " pages reported with no writes while tracking";
}

INSTANTIATE_TEST_SUITE_P(
    Paths, MicroVmDirtyLog,
    ::testing::Values(PathCase{"GetClears", 0, DirtyLogPath::kGetClears},
                      PathCase{"ManualProtect", KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, DirtyLogPath::kManualProtect},
                      PathCase{"ManualProtectInitiallySet",
                               KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET,
                               DirtyLogPath::kManualProtectInitiallySet}),
    [](const ::testing::TestParamInfo<PathCase>& info) { return std::string(info.param.name); });

TEST(MicroVmDirtyLogPath, ManualProtectionIsTakenWhereKvmOffersIt) {
  FERRY_SKIP_WITHOUT_KVM();
  auto kvm = KvmSystem::Open();
  ASSERT_TRUE(kvm.ok()) << kvm.status();
  int offered = kvm->CheckExtension(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
  DirtyLogPath want = !(offered & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) ? DirtyLogPath::kGetClears
                      : (offered & KVM_DIRTY_LOG_INITIALLY_SET)       ? DirtyLogPath::kManualProtectInitiallySet
                                                                       : DirtyLogPath::kManualProtect;
  auto vm = CreateMicroVmWithCode(TinySpec(), tiny_guest::kLoadGpa, tiny_guest::WriteDwordsThenShutdown({}));
  ASSERT_TRUE(vm.ok()) << vm.status();
  auto path = MicroVmDirtyLogPath(**vm);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, want) << "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = " << offered;
}

TEST(MicroVmDirtyLogPath, WrongSizedBitmapIsRefused) {
  FERRY_SKIP_WITHOUT_KVM();
  auto vm = CreateMicroVmWithCode(TinySpec(), tiny_guest::kLoadGpa, tiny_guest::WriteDwordsThenShutdown({}));
  ASSERT_TRUE(vm.ok()) << vm.status();
  DirtyBitmap wrong(7);
  absl::Status st = (*vm)->CollectDirtyPages(wrong);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
}

}  // namespace
}  // namespace ferry
