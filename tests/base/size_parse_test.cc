#include "engine/base/size_parse.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

TEST(ParseByteSize, AcceptsBinaryUnits) {
  EXPECT_EQ(*ParseByteSize("256MiB"), 256ull << 20);
  EXPECT_EQ(*ParseByteSize("1GiB"), 1ull << 30);
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_EQ(*ParseByteSize("64m"), 64ull << 20);
}

TEST(ParseByteSize, RejectsGarbageWithTheInputInTheMessage) {
  auto r = ParseByteSize("lots");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("lots"), std::string::npos);
  EXPECT_FALSE(ParseByteSize("12 parsecs").ok());
}

TEST(ParseRateMiBps, AcceptsRatesAndBareNumbers) {
  EXPECT_DOUBLE_EQ(*ParseRateMiBps("50MiB/s"), 50.0);
  EXPECT_DOUBLE_EQ(*ParseRateMiBps("1GiB/s"), 1024.0);
  EXPECT_DOUBLE_EQ(*ParseRateMiBps("0"), 0.0);
  EXPECT_FALSE(ParseRateMiBps("fast").ok());
}

}  // namespace
}  // namespace ferry
