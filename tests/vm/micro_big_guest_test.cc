// A KVM guest above 4 GiB: guest RAM is one memfd mapped as two memory slots (below 3 GiB at GPA
// 0, the rest at GPA 4 GiB). The built-in guest's working set runs across both; the guest checks
// every page it rewrites, and the host checks every written page's content through the memfd.
// Memory is mostly never-touched memfd, so a 4.5 GiB guest costs what its workload writes.
#include <gtest/gtest.h>
#include <linux/kvm.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "engine/base/clock.h"
#include "engine/guest/workload.h"
#include "engine/kvm/kvm_system.h"
#include "engine/state/snapshot.h"
#include "engine/vm/micro_vm.h"
#include "engine/vm/multiboot_loader.h"
#include "tests/kvm/kvm_available.h"

namespace ferry {
namespace {

constexpr uint64_t kLowSlotPages = FERRY_GPA_LOW_RAM_END >> kPageShift;

VmSpec BigSpec(const std::string& console_log) {
  VmSpec spec;
  spec.name = "big";
  spec.memory_bytes = 4608ull << 20;                // 4.5 GiB: 1.5 GiB of it at GPA 4 GiB
  spec.workload.working_set_bytes = 4400ull << 20;  // ~30% of it above GPA 4 GiB
  spec.workload.dirty_rate_mibps = 50;
  spec.workload.pattern = "random";
  spec.image_path = DefaultGuestImagePath();
  spec.console_log_path = console_log;
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

// The workload as the host sees it through the memfd: a guest view address is a memfd offset.
struct Workset {
  explicit Workset(Vm& vm) : base(vm.memory().data() + FERRY_GPA_WORKSET) {}
  const fw_state& state() const { return *reinterpret_cast<const fw_state*>(base); }
  uint64_t pages() const { return state().cfg.ws_pages; }
  std::vector<uint32_t> gens() const {
    const uint32_t* g = fw_gen_table(base);
    return std::vector<uint32_t>(g, g + pages());
  }
  // Memfd page index of working-set page p.
  uint64_t memfd_page(uint64_t p) const { return ((FERRY_GPA_WORKSET + state().pages_offset) >> kPageShift) + p; }
  // Pages the guest wrote whose content is not what their generation says.
  std::vector<uint64_t> BadPages() const {
    std::vector<uint64_t> bad;
    const uint32_t* g = fw_gen_table(base);
    for (uint64_t p = 0; p < pages(); ++p) {
      uint64_t expected, got;
      uint32_t word;
      if (g[p] != 0 && !fw_check_page(base, p, &expected, &got, &word)) bad.push_back(p);
    }
    return bad;
  }
  uint8_t* base;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class MicroBigGuestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_SKIP_WITHOUT_KVM();
    ASSERT_TRUE(std::filesystem::exists(DefaultGuestImagePath()))
        << "guest image " << DefaultGuestImagePath() << " missing: build ferry_guest";
    char tmpl[] = "/tmp/ferry-big-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Boots the big guest and waits until its workload runs.
  std::unique_ptr<Vm> BootBig(const MicroVmOptions& options = {}) {
    auto vm = CreateMicroVm(BigSpec(dir_ + "/console.log"), /*for_restore=*/false, options);
    EXPECT_TRUE(vm.ok()) << vm.status();
    if (!vm.ok()) return nullptr;
    EXPECT_TRUE((*vm)->Start().ok());
    GuestHealth h = WaitFor(**vm, 15000, [](const GuestHealth& h) { return h.heartbeats >= 3; });
    EXPECT_GE(h.heartbeats, 3u) << "the guest did not start its workload; console:\n"
                                << ReadFile(dir_ + "/console.log");
    return std::move(*vm);
  }

  std::string dir_;
};

TEST_F(MicroBigGuestTest, GuestSeesAllMemoryInItsMemoryMap) {
  std::unique_ptr<Vm> vm = BootBig();
  ASSERT_NE(vm, nullptr);
  ASSERT_TRUE(vm->Stop().ok());
  // boot_setup prints the size of the guest's linear view of RAM: both ranges of the memory map.
  std::string console = ReadFile(dir_ + "/console.log");
  EXPECT_NE(console.find("ws=4400MiB"), std::string::npos) << console;
  EXPECT_NE(console.find("mem=4608MiB"), std::string::npos) << console;
}

TEST(MicroBigGuestSpec, WorkingSetBeyondTheGuestsRamViewIsRefused) {
  FERRY_SKIP_WITHOUT_KVM();
  VmSpec spec = BigSpec("");
  spec.memory_bytes = 80ull << 30;  // refused before any memory is allocated
  spec.workload.working_set_bytes = 70ull << 30;
  auto vm = CreateMicroVm(spec, /*for_restore=*/false);
  ASSERT_FALSE(vm.ok());
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(vm.status().message().find("maps 64 GiB"), std::string::npos) << vm.status();
}

// The working set above GPA 4 GiB is written, re-verified by the guest and seen by the dirty log,
// exactly, on each dirty-log path (the legacy one forced).
class MicroBigGuestDirtyLogTest : public MicroBigGuestTest, public ::testing::WithParamInterface<uint64_t> {};

TEST_P(MicroBigGuestDirtyLogTest, DirtyLogSeesExactlyTheGuestsWritesInBothSlots) {
  MicroVmOptions options;
  options.dirty_log_protect_flags = GetParam();
  std::unique_ptr<Vm> vm = BootBig(options);
  ASSERT_NE(vm, nullptr);
  Workset ws(*vm);
  ASSERT_TRUE(fw_valid(ws.base));
  ASSERT_EQ(ws.pages(), (4400ull << 20) >> kPageShift);
  ASSERT_GT(ws.memfd_page(ws.pages() - 1), kLowSlotPages) << "the working set does not reach GPA 4 GiB";

  Stopwatch enable;
  ASSERT_TRUE(vm->EnableDirtyTracking().ok());
  std::cout << "EnableDirtyTracking: " << enable.ElapsedMillis() << " ms\n";
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  // Paused, the log's next report starts from these generations.
  ASSERT_TRUE(vm->Pause().ok());
  std::vector<uint32_t> before = ws.gens();
  uint64_t verified_before = ws.state().w[0].pages_verified;
  DirtyBitmap discard(vm->memory().num_pages());
  ASSERT_TRUE(vm->CollectDirtyPages(discard).ok());
  ASSERT_TRUE(vm->Resume().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  ASSERT_TRUE(vm->Pause().ok());
  DirtyBitmap dirty(vm->memory().num_pages());
  Stopwatch collect;
  ASSERT_TRUE(vm->CollectDirtyPages(dirty).ok());
  std::cout << "CollectDirtyPages: " << collect.ElapsedMillis() << " ms, " << dirty.Count() << " pages\n";
  std::vector<uint32_t> after = ws.gens();
  uint64_t verified = ws.state().w[0].pages_verified - verified_before;

  uint64_t written_low = 0, written_high = 0, missed = 0, extra = 0, first_read = 0, reverified_high = 0;
  for (uint64_t p = 0; p < ws.pages(); ++p) {
    bool written = after[p] != before[p];
    bool reported = dirty.Test(ws.memfd_page(p));
    if (written) ++(ws.memfd_page(p) < kLowSlotPages ? written_low : written_high);
    if (written && !reported) ++missed;
    // KVM maps a page the guest first touches by a read writable (the memfd page is writable)
    // and logs it: a never-written page the guest's sweep read is reported too.
    if (!written && reported) ++(after[p] == 0 ? first_read : extra);
    if (ws.memfd_page(p) >= kLowSlotPages && after[p] >= 2) ++reverified_high;
  }
  std::cout << written_low << " + " << written_high << " pages written below/above 4 GiB, " << first_read
            << " first read, " << verified << " verified\n";
  EXPECT_GT(written_low, 0u) << "no write below 3 GiB";
  EXPECT_GT(written_high, 0u) << "no write in the slot at GPA 4 GiB";
  EXPECT_EQ(missed, 0u) << "written pages the dirty log lost (" << written_low << " + " << written_high << " written)";
  EXPECT_EQ(extra, 0u) << "pages the guest wrote before the collect, and not since, reported dirty";
  EXPECT_LE(first_read, verified) << "never-written pages reported beyond those the guest read";
  // A page at generation 2+ was checked by the guest before it rewrote it.
  EXPECT_GT(reverified_high, 0u) << "the guest never re-verified a page above GPA 4 GiB";
  EXPECT_EQ(ws.BadPages(), std::vector<uint64_t>{}) << "pages whose content the host finds wrong";

  GuestHealth h = vm->health();
  EXPECT_EQ(h.corruptions, 0u) << (h.corruption_reports.empty() ? "" : h.corruption_reports[0]);
  EXPECT_FALSE(h.shut_down) << "guest exited with code " << h.exit_code;
  EXPECT_TRUE(vm->Stop().ok());
}

INSTANTIATE_TEST_SUITE_P(Paths, MicroBigGuestDirtyLogTest,
                         ::testing::Values(0, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET),
                         [](const ::testing::TestParamInfo<uint64_t>& info) {
                           return std::string(info.param == 0 ? "GetClears" : "ManualProtectInitiallySet");
                         });

TEST_F(MicroBigGuestTest, SnapshotRestoresTheWorkingSetAboveFourGiB) {
  std::string snap = dir_ + "/snap";
  std::vector<uint32_t> saved;
  uint64_t heartbeats = 0;
  {
    std::unique_ptr<Vm> vm = BootBig();
    ASSERT_NE(vm, nullptr);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    ASSERT_TRUE(vm->Pause().ok());
    Stopwatch sw;
    auto stats = SaveSnapshot(*vm, snap);
    ASSERT_TRUE(stats.ok()) << stats.status();
    std::cout << "SaveSnapshot: " << sw.ElapsedMillis() << " ms, " << stats->pages_written << " pages\n";
    // Never-touched memory stays a hole: neither read (which would allocate it) nor written.
    EXPECT_LT(stats->pages_written, vm->memory().num_pages() / 8);
    saved = Workset(*vm).gens();
    heartbeats = vm->health().heartbeats;
    ASSERT_TRUE(vm->Stop().ok());
  }

  auto spec = ReadSnapshotSpec(snap);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->memory_bytes, 4608ull << 20);
  auto vm = CreateVmForRestore(*spec);
  ASSERT_TRUE(vm.ok()) << vm.status();
  Stopwatch sw;
  ASSERT_TRUE(RestoreSnapshot(snap, **vm).ok());
  std::cout << "RestoreSnapshot: " << sw.ElapsedMillis() << " ms\n";
  Workset ws(**vm);
  ASSERT_EQ(ws.gens(), saved);
  uint64_t saved_high = 0;
  for (uint64_t p = 0; p < ws.pages(); ++p) saved_high += saved[p] != 0 && ws.memfd_page(p) >= kLowSlotPages;
  EXPECT_GT(saved_high, 0u) << "the snapshot holds no written page above GPA 4 GiB";
  EXPECT_EQ(ws.BadPages(), std::vector<uint64_t>{}) << "restored pages whose content is wrong";

  ASSERT_TRUE((*vm)->Start().ok());
  GuestHealth h = WaitFor(**vm, 10000, [&](const GuestHealth& h) { return h.heartbeats >= heartbeats + 2000; });
  EXPECT_GE(h.heartbeats, heartbeats + 2000) << "the restored guest did not keep beating";
  ASSERT_TRUE((*vm)->Pause().ok());
  std::vector<uint32_t> after = ws.gens();
  // Rewriting a page, the guest first checks the content it had: restored pages above 4 GiB.
  uint64_t rechecked_high = 0;
  for (uint64_t p = 0; p < ws.pages(); ++p) {
    rechecked_high += saved[p] != 0 && after[p] > saved[p] && ws.memfd_page(p) >= kLowSlotPages;
  }
  EXPECT_GT(rechecked_high, 0u) << "the restored guest never rewrote a restored page above GPA 4 GiB";
  h = (*vm)->health();
  EXPECT_EQ(h.corruptions, 0u) << (h.corruption_reports.empty() ? "" : h.corruption_reports[0]);
  EXPECT_FALSE(h.shut_down) << "guest exited with code " << h.exit_code;
  EXPECT_EQ(ws.BadPages(), std::vector<uint64_t>{});
  EXPECT_TRUE((*vm)->Stop().ok());
}

}  // namespace
}  // namespace ferry
