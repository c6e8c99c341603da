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
  ASSERT_TRUE((*tracker)->Collect(seen).ok());
  EXPECT_GT(collections, 3u) << "the writers finished before the collector raced them";
  EXPECT_EQ(seen.Count(), pages) << "pages written while collections ran were lost (" << (*tracker)->mechanism_name()
                                 << ", " << collections << " collections)";
  std::printf("%s: %llu collections of %llu MiB while writing, %.0f us each\n", (*tracker)->mechanism_name(),
              static_cast<unsigned long long>(collections), static_cast<unsigned long long>(kBytes >> 20),
              collections ? collect_ns / 1e3 / static_cast<double>(collections) : 0.0);
  EXPECT_TRUE((*tracker)->Stop().ok());
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, PageWriteTrackerTest,
                         ::testing::Values(Mechanism::kUffdWpAsync, Mechanism::kSoftDirty),
                         [](const auto& info) { return info.param == Mechanism::kSoftDirty ? "SoftDirty" : "UffdWpAsync"; });

}  // namespace
}  // namespace ferry
