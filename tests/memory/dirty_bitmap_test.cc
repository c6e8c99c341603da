#include "engine/memory/dirty_bitmap.h"

#include <gtest/gtest.h>

#include <vector>

namespace ferry {
namespace {

TEST(DirtyBitmap, CountsAndRunsMatchWhatWasSet) {
  DirtyBitmap b(200);
  b.Set(0);
  b.Set(1);
  b.Set(63);
  b.Set(64);
  b.Set(199);
  EXPECT_EQ(b.Count(), 5u);
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  b.ForEachRun([&](uint64_t first, uint64_t n) { runs.emplace_back(first, n); });
  EXPECT_EQ(runs, (std::vector<std::pair<uint64_t, uint64_t>>{{0, 2}, {63, 2}, {199, 1}}));
}

TEST(DirtyBitmap, RunsSpanWholeWordsAndTheirNeighbours) {
  DirtyBitmap b(320);
  b.SetRange(60, 4 + 128 + 5);  // 60..63, two whole words, 192..196
  b.SetRange(256, 64);          // a whole last word, ending the bitmap
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  b.ForEachRun([&](uint64_t first, uint64_t n) { runs.emplace_back(first, n); });
  EXPECT_EQ(runs, (std::vector<std::pair<uint64_t, uint64_t>>{{60, 137}, {256, 64}}));
}

TEST(DirtyBitmap, SetAllStopsAtTheLastPage) {
  DirtyBitmap b(70);
  b.SetAll();
  EXPECT_EQ(b.Count(), 70u);
  EXPECT_FALSE(b.Test(70));
}

TEST(DirtyBitmap, OrMergesKvmStyleWords) {
  DirtyBitmap a(128), c(128);
  a.Set(3);
  std::vector<uint64_t> words = {0, 1ull << 5};
  c.OrWords(0, words);
  a.Or(c);
  EXPECT_TRUE(a.Test(3));
  EXPECT_TRUE(a.Test(69));
  EXPECT_EQ(a.Count(), 2u);
  a.ClearAll();
  EXPECT_TRUE(a.Empty());
}

}  // namespace
}  // namespace ferry
