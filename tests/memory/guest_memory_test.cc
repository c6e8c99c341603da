#include "engine/memory/guest_memory.h"

#include <gtest/gtest.h>

#include <cstring>

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

}  // namespace
}  // namespace ferry
