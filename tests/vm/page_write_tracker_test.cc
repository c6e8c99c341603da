// PageWriteTracker on both mechanisms, the soft-dirty one forced (it is what Debian 12's kernel
// 6.1 uses): while writers keep writing, no write is ever lost between two collections.
#include "engine/vm/page_write_tracker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "engine/memory/guest_memory.h"
#include "engine/memory/page.h"

namespace ferry {
namespace {

using Mechanism = PageWriteTracker::Mechanism;

class PageWriteTrackerTest : public ::testing::TestWithParam<Mechanism> {};

// Pages never touched before tracking started (memfd holes) are tracked on their first write.
TEST_P(PageWriteTrackerTest, FirstWritesToNeverTouchedPagesAreSeen) {
  constexpr uint64_t kBytes = 8ull << 20;
  auto mem = GuestMemory::Create(kBytes);
  ASSERT_TRUE(mem.ok()) << mem.status();
  auto tracker = PageWriteTracker::CreateWith(GetParam(), (*mem)->data(), kBytes);
  if (!tracker.ok()) GTEST_SKIP() << "this kernel lacks the mechanism: " << tracker.status();
  ASSERT_TRUE((*tracker)->Start().ok());
  for (uint64_t p : {0ull, 5ull, 1000ull, 2047ull}) (*mem)->data()[p * kPageSize] = 7;
  DirtyBitmap seen((*mem)->num_pages());
  ASSERT_TRUE((*tracker)->Collect(seen).ok());
  EXPECT_EQ(seen.Count(), 4u);
  EXPECT_TRUE(seen.Test(0) && seen.Test(5) && seen.Test(1000) && seen.Test(2047));
  DirtyBitmap again((*mem)->num_pages());
  (*mem)->data()[5 * kPageSize + 1] = 8;
  ASSERT_TRUE((*tracker)->Collect(again).ok());
  EXPECT_EQ(again.Count(), 1u) << "a collection forgets what it reported";
  EXPECT_TRUE((*tracker)->Stop().ok());
  (*mem)->data()[6 * kPageSize] = 1;  // untracked now, and never blocked
}

// Two writers each write every page of their half exactly once (a lost write is never repaired by
// a later one) while the collector collects back to back. Every written page must show up.
TEST_P(PageWriteTrackerTest, NoWriteIsLostWhileWritersKeepWriting) {
  constexpr uint64_t kBytes = 32ull << 20;
  auto mem = GuestMemory::Create(kBytes);
  ASSERT_TRUE(mem.ok()) << mem.status();
  for (uint64_t i = 0; i < kBytes; i += kPageSize) (*mem)->data()[i] = 1;  // populated, as a running guest's
  auto tracker = PageWriteTracker::CreateWith(GetParam(), (*mem)->data(), kBytes);
  if (!tracker.ok()) GTEST_SKIP() << "this kernel lacks the mechanism: " << tracker.status();
  ASSERT_TRUE((*tracker)->Start().ok());
  const uint64_t pages = (*mem)->num_pages();
  std::atomic<int> running{2};
  auto writer = [&](uint64_t first, uint64_t count) {
    for (uint64_t p = first; p < first + count; ++p) {
      if ((*tracker)->writers_need_gate()) {
        absl::ReaderMutexLock writing(&PageWriteTracker::WriterGate());
        (*mem)->data()[p * kPageSize + 8] = 2;
      } else {
        (*mem)->data()[p * kPageSize + 8] = 2;
      }
      if (p % 64 == 0) std::this_thread::yield();
    }
    --running;
  };
  const auto writers_start = std::chrono::steady_clock::now();
  std::thread a(writer, 0, pages / 2), b(writer, pages / 2, pages - pages / 2);
  DirtyBitmap seen(pages);
  uint64_t collections = 0;
  int64_t collect_ns = 0;
  while (running.load() > 0) {
    auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE((*tracker)->Collect(seen).ok());
    collect_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
    ++collections;
  }
  a.join();
  b.join();
  const double write_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - writers_start).count();
  ASSERT_TRUE((*tracker)->Collect(seen).ok());
  EXPECT_GT(collections, 3u) << "the writers finished before the collector raced them";
  EXPECT_EQ(seen.Count(), pages) << "pages written while collections ran were lost (" << (*tracker)->mechanism_name()
                                 << ", " << collections << " collections)";
  std::printf("%s: %llu collections of %llu MiB while writing, %.0f us each; 2 writers took %.1f us per page\n",
              (*tracker)->mechanism_name(), static_cast<unsigned long long>(collections),
              static_cast<unsigned long long>(kBytes >> 20),
              collections ? collect_ns / 1e3 / static_cast<double>(collections) : 0.0, write_us / pages * 2);
  EXPECT_TRUE((*tracker)->Stop().ok());
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, PageWriteTrackerTest,
                         ::testing::Values(Mechanism::kUffdWpAsync, Mechanism::kUffdWpSync, Mechanism::kSoftDirty),
                         [](const auto& info) {
                           return info.param == Mechanism::kSoftDirty   ? "SoftDirty"
                                  : info.param == Mechanism::kUffdWpSync ? "UffdWpSync"
                                                                          : "UffdWpAsync";
                         });

}  // namespace
}  // namespace ferry
