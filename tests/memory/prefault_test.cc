// The pre-fault never changes memory, even while other threads write the same pages: forced onto
// the atomic-touch path that kernels without MADV_POPULATE_WRITE take.
#include "engine/memory/prefault.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "engine/memory/guest_memory.h"
#include "engine/memory/page.h"

namespace ferry {
namespace {

constexpr uint64_t kBytes = 64ull << 20;

// Writers keep storing increasing counters into the first word of every page (the word the touch
// works on) while the pre-fault passes over them again and again; afterwards every page holds its
// writer's last value.
void ExpectNoWriteLost(PrefaultMethod method) {
  auto mem = GuestMemory::Create(kBytes);
  ASSERT_TRUE(mem.ok()) << mem.status();
  uint8_t* base = (*mem)->data();
  const uint64_t pages = (*mem)->num_pages();
  constexpr int kWriters = 2;
  std::atomic<bool> stop{false};
  std::vector<std::vector<uint64_t>> last(kWriters, std::vector<uint64_t>(pages, 0));
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (uint64_t value = 1; !stop.load(std::memory_order_relaxed); ++value) {
        for (uint64_t p = static_cast<uint64_t>(w); p < pages; p += kWriters) {
          std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(base + p * kPageSize))
              .store(value, std::memory_order_relaxed);
          last[w][p] = value;
        }
      }
    });
  }
  PrefaultMethod used = method;
  for (int pass = 0; pass < 20; ++pass) used = PrefaultRange(base, kBytes, method);
  stop = true;
  for (auto& t : writers) t.join();
  if (method == PrefaultMethod::kAtomicTouch) {
    EXPECT_EQ(used, PrefaultMethod::kAtomicTouch);
  }
  uint64_t lost = 0;
  for (uint64_t p = 0; p < pages; ++p) {
    const uint64_t have = *reinterpret_cast<uint64_t*>(base + p * kPageSize);
    if (have != last[p % kWriters][p]) ++lost;
  }
  EXPECT_EQ(lost, 0u) << "pages whose last write the pre-fault undid";
}

TEST(Prefault, AtomicTouchNeverLosesAConcurrentWrite) { ExpectNoWriteLost(PrefaultMethod::kAtomicTouch); }

TEST(Prefault, PopulateWriteNeverLosesAConcurrentWrite) { ExpectNoWriteLost(PrefaultMethod::kPopulateWrite); }

TEST(Prefault, LeavesContentAsItIs) {
  auto mem = GuestMemory::Create(4ull << 20);
  ASSERT_TRUE(mem.ok()) << mem.status();
  for (uint64_t i = 0; i < (*mem)->size(); i += 512) (*mem)->data()[i] = static_cast<uint8_t>(i / 512 + 1);
  PrefaultRange((*mem)->data(), (*mem)->size(), PrefaultMethod::kAtomicTouch);
  for (uint64_t i = 0; i < (*mem)->size(); i += 512) {
    ASSERT_EQ((*mem)->data()[i], static_cast<uint8_t>(i / 512 + 1)) << "byte " << i;
  }
}

}  // namespace
}  // namespace ferry
