#include "engine/memory/guest_memory.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace ferry {
namespace {

TEST(GuestMemory, StartsZeroAndDetectsZeroPages) {
  auto mem = GuestMemory::Create(16 * kPageSize);
  ASSERT_TRUE(mem.ok()) << mem.status();
  EXPECT_TRUE(IsZeroPage((*mem)->page(3)));
  (*mem)->page(3)[4095] = 1;
  EXPECT_FALSE(IsZeroPage((*mem)->page(3)));
}

TEST(GuestMemory, RefusesMoreThanTheHostHasWithAClearError) {
  auto mem = GuestMemory::Create(1ull << 50);
  ASSERT_FALSE(mem.ok());
  EXPECT_EQ(mem.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(mem.status().message().find("physical memory"), std::string::npos);
}

TEST(GuestMemory, RefusesSizesThatAreNotWholePages) {
  EXPECT_FALSE(GuestMemory::Create(1000).ok());
  EXPECT_FALSE(GuestMemory::Create(0).ok());
}

TEST(GuestMemory, WriteThroughFileLandsInTheMappedPagesAndStaysInBounds) {
  auto mem = GuestMemory::Create(16 * kPageSize);
  ASSERT_TRUE(mem.ok()) << mem.status();
  std::vector<uint8_t> src(3 * kPageSize);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 7 + 1);
  ASSERT_TRUE((*mem)->WriteThroughFile(13, src.data(), src.size()).ok());
  DirtyBitmap populated(16);
  (*mem)->MarkPopulatedPages(populated);
  EXPECT_EQ(populated.Count(), 3u);  // only the written pages were allocated
  EXPECT_EQ(0, std::memcmp((*mem)->page(13), src.data(), src.size()));
  EXPECT_TRUE(IsZeroPage((*mem)->page(12)));  // (reading a hole through the mapping allocates it)
  // Past the end, or not whole pages: refused, nothing written.
  std::vector<uint8_t> other(3 * kPageSize, 0xEE);
  absl::Status st = (*mem)->WriteThroughFile(14, other.data(), other.size());
  EXPECT_EQ(st.code(), absl::StatusCode::kOutOfRange) << st;
  EXPECT_NE(st.message().find("outside guest memory"), std::string::npos) << st;
  EXPECT_FALSE((*mem)->WriteThroughFile(0, src.data(), 100).ok());
  EXPECT_FALSE((*mem)->WriteThroughFile(17, src.data(), 0).ok());
  EXPECT_EQ(0, std::memcmp((*mem)->page(14), src.data() + kPageSize, kPageSize));
}

}  // namespace
}  // namespace ferry
