// The synthetic backend: kernel dirty tracking is exact, and a VM moved by copying memory (a
// pre-copy with dirty rounds) plus saved state continues its workload with nothing lost.
#include "engine/vm/synthetic_vm.h"

#include <chrono>
#include <cstring>
#include <thread>

#include "engine/guest/guest_abi.h"
#include "engine/guest/workload.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

using std::chrono::milliseconds;

VmSpec Spec(uint32_t vcpus) {
  VmSpec s;
  s.name = "synthetic-test";
  s.backend = Backend::kSynthetic;
  s.memory_bytes = 32ull << 20;
  s.vcpus = vcpus;
  s.workload.working_set_bytes = 8ull << 20;
  s.workload.dirty_rate_mibps = 40;
  s.workload.pattern = "random";
  return s;
}

// Waits until pred(health) holds or `ms` pass.
template <typename Pred>
GuestHealth WaitFor(Vm& vm, int ms, Pred pred) {
  auto end = std::chrono::steady_clock::now() + milliseconds(ms);
  GuestHealth h = vm.health();
  while (!pred(h) && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(milliseconds(5));
    h = vm.health();
  }
  return h;
}

void CopyPages(Vm& from, Vm& to, const DirtyBitmap& pages) {
  pages.ForEachRun([&](uint64_t first, uint64_t count) {
    std::memcpy(to.memory().page(first), from.memory().page(first), count * kPageSize);
  });
}

TEST(SyntheticVmTest, DirtyTrackingReportsExactlyTheWrittenPages) {
  auto vm = CreateSyntheticVm(Spec(1), /*for_restore=*/false);
  ASSERT_TRUE(vm.ok()) << vm.status();
  GuestMemory& mem = (*vm)->memory();
  mem.page(3)[0] = 1;  // before tracking: not reported
  ASSERT_TRUE((*vm)->EnableDirtyTracking().ok());
  const std::vector<uint64_t> written = {0, 5, 100, 101, 2048, mem.num_pages() - 1};
  for (uint64_t p : written) mem.page(p)[p % kPageSize] = 0xab;
  volatile uint8_t read = mem.page(7)[0];  // reads do not count
  (void)read;
  DirtyBitmap dirty(mem.num_pages());
  ASSERT_TRUE((*vm)->CollectDirtyPages(dirty).ok());
  std::vector<uint64_t> got;
  for (uint64_t p = 0; p < mem.num_pages(); ++p)
    if (dirty.Test(p)) got.push_back(p);
  EXPECT_EQ(got, written);
  DirtyBitmap again(mem.num_pages());
  ASSERT_TRUE((*vm)->CollectDirtyPages(again).ok());
  EXPECT_TRUE(again.Empty()) << again.Count() << " pages reported with no writes";
  mem.page(5)[1] = 2;  // rewrite of a page already collected once
  ASSERT_TRUE((*vm)->CollectDirtyPages(again).ok());
  EXPECT_EQ(again.Count(), 1u);
  EXPECT_TRUE(again.Test(5));
}

// Pre-copy by hand: full copy while running, two dirty rounds, pause, last dirty pages, state.
std::unique_ptr<Vm> Migrate(Vm& src, bool alter_one_page) {
  auto dst_or = CreateSyntheticVm(src.spec(), /*for_restore=*/true);
  EXPECT_TRUE(dst_or.ok()) << dst_or.status();
  std::unique_ptr<Vm> dst = std::move(*dst_or);
  const uint64_t n = src.memory().num_pages();
  EXPECT_TRUE(src.EnableDirtyTracking().ok());
  DirtyBitmap all(n);
  all.SetAll();
  CopyPages(src, *dst, all);
  for (int round = 0; round < 2; ++round) {
    std::this_thread::sleep_for(milliseconds(50));
    DirtyBitmap dirty(n);
    EXPECT_TRUE(src.CollectDirtyPages(dirty).ok());
    EXPECT_GT(dirty.Count(), 0u) << "a running workload dirtied nothing";
    CopyPages(src, *dst, dirty);
  }
  EXPECT_TRUE(src.Pause().ok());
  DirtyBitmap last(n);
  EXPECT_TRUE(src.CollectDirtyPages(last).ok());
  CopyPages(src, *dst, last);
  auto state = src.SaveState();
  EXPECT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->backend(), v1::BACKEND_KIND_SYNTHETIC);
  EXPECT_TRUE(src.Stop().ok());
  if (alter_one_page) {
    // A page the guest has written: its content no longer matches its generation.
    auto* st = reinterpret_cast<fw_state*>(dst->memory().data() + FERRY_GPA_WORKSET);
    auto* gens = reinterpret_cast<uint32_t*>(dst->memory().data() + FERRY_GPA_WORKSET + st->gen_offset);
    uint64_t page = 0;
    while (gens[page] == 0) ++page;
    dst->memory().data()[FERRY_GPA_WORKSET + st->pages_offset + page * kPageSize + 40] ^= 0x5a;
  }
  EXPECT_TRUE(dst->RestoreState(*state).ok());
  EXPECT_TRUE(dst->Start().ok());
  return dst;
}

TEST(SyntheticVmTest, PrecopiedVmContinuesHeartbeatsWithoutCorruption) {
  auto src = CreateSyntheticVm(Spec(2), /*for_restore=*/false);
  ASSERT_TRUE(src.ok()) << src.status();
  ASSERT_TRUE((*src)->Start().ok());
  GuestHealth h = WaitFor(**src, 2000, [](const GuestHealth& h) { return h.heartbeats >= 100; });
  ASSERT_GE(h.heartbeats, 100u);
  EXPECT_EQ(h.vcpus_booted, 2u);
  std::unique_ptr<Vm> dst = Migrate(**src, /*alter_one_page=*/false);
  uint64_t at_switch = dst->health().heartbeats;
  // 2048 pages over 2 workers, 8 pages/ms each: every page is re-verified within ~130 ms.
  std::this_thread::sleep_for(milliseconds(400));
  GuestHealth after = dst->health();
  EXPECT_GE(after.heartbeats, at_switch + 200);
  EXPECT_GT(after.last_heartbeat_value, h.last_heartbeat_value) << "the guest's counter restarted";
  EXPECT_EQ(after.corruptions, 0u) << (after.corruption_reports.empty() ? "" : after.corruption_reports[0]);
  EXPECT_TRUE(dst->Stop().ok());
}

// Verification after arrival: the guest re-checks every page of its working set in a sweep that
// began here (the one under way at the switch-over does not count), and the VMM says when.
TEST(SyntheticVmTest, MigratedVmReportsAFullSweepThatBeganOnArrival) {
  auto src = CreateSyntheticVm(Spec(2), /*for_restore=*/false);
  ASSERT_TRUE(src.ok()) << src.status();
  ASSERT_TRUE((*src)->Start().ok());
  GuestHealth h = WaitFor(**src, 5000, [](const GuestHealth& h) { return h.full_sweeps >= 1; });
  ASSERT_GE(h.full_sweeps, 1u) << "the source never finished a sweep";
  std::unique_ptr<Vm> dst = Migrate(**src, /*alter_one_page=*/false);
  EXPECT_EQ(dst->health().full_sweeps, 0u);
  h = WaitFor(*dst, 5000, [](const GuestHealth& h) { return h.full_sweeps >= 1; });
  ASSERT_GE(h.full_sweeps, 1u) << "no full sweep within 5 s of arrival";
  ASSERT_GT(h.arrival_ns, 0);
  // 1024 pages per worker at 8 pages per ms of guest time: a whole sweep takes at least ~128 ms,
  // so an earlier "verified" would have counted the sweep that began on the source.
  EXPECT_GE(h.first_full_sweep_ns - h.arrival_ns, 100'000'000);
  EXPECT_EQ(h.corruptions, 0u);
  EXPECT_TRUE(dst->Stop().ok());
}

TEST(SyntheticVmTest, AlteredPageAfterMigrationIsReportedAsCorruption) {
  auto src = CreateSyntheticVm(Spec(2), /*for_restore=*/false);
  ASSERT_TRUE(src.ok()) << src.status();
  ASSERT_TRUE((*src)->Start().ok());
  WaitFor(**src, 2000, [](const GuestHealth& h) { return h.heartbeats >= 50; });
  std::unique_ptr<Vm> dst = Migrate(**src, /*alter_one_page=*/true);
  GuestHealth h = WaitFor(*dst, 2000, [](const GuestHealth& h) { return h.corruption_reports.size() >= 1 &&
                                                                         h.corruption_reports[0].find("expected") != std::string::npos; });
  ASSERT_EQ(h.corruptions, 1u);
  EXPECT_EQ(h.corruption_reports[0].rfind("CORRUPTION page=", 0), 0u) << h.corruption_reports[0];
  EXPECT_NE(h.corruption_reports[0].find(" got=0x"), std::string::npos) << h.corruption_reports[0];
  EXPECT_TRUE(dst->Stop().ok());
}

TEST(SyntheticVmTest, RefusesWorkingSetLargerThanMemory) {
  VmSpec s = Spec(1);
  s.workload.working_set_bytes = 64ull << 20;
  auto vm = CreateSyntheticVm(s, false);
  ASSERT_EQ(vm.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(vm.status().message().find("working set of 64 MiB needs"), absl::string_view::npos) << vm.status();
}

TEST(SyntheticVmTest, SaveStateRequiresPauseAndRestoreRequiresMemory) {
  auto vm = CreateSyntheticVm(Spec(1), false);
  ASSERT_TRUE(vm.ok());
  ASSERT_TRUE((*vm)->Start().ok());
  EXPECT_EQ((*vm)->SaveState().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*vm)->Pause().ok());
  auto state = (*vm)->SaveState();
  ASSERT_TRUE(state.ok());
  auto empty = CreateSyntheticVm(Spec(1), true);
  ASSERT_TRUE(empty.ok());
  ASSERT_TRUE((*empty)->RestoreState(*state).ok());
  auto st = (*empty)->Start();  // memory never copied in
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("no workload state"), absl::string_view::npos) << st;
}

}  // namespace
}  // namespace ferry
