#include "engine/net/mac_address.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

TEST(MacAddress, ParsesAndFormatsLowerCase) {
  auto mac = MacAddress::Parse("52:54:00:AB:cd:Ef");
  ASSERT_TRUE(mac.ok()) << mac.status();
  EXPECT_EQ(mac->bytes(), (std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}));
  EXPECT_EQ(mac->ToString(), "52:54:00:ab:cd:ef");
  EXPECT_FALSE(mac->IsMulticast());
}

TEST(MacAddress, RoundTripsThroughText) {
  const MacAddress mac({0x02, 0xff, 0x10, 0x00, 0x01, 0x80});
  auto back = MacAddress::Parse(mac.ToString());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, mac);
}

void ExpectError(absl::string_view text, absl::string_view fragment) {
  auto mac = MacAddress::Parse(text);
  ASSERT_FALSE(mac.ok()) << "accepted \"" << std::string(text) << "\"";
  EXPECT_EQ(mac.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(mac.status().message());
  EXPECT_NE(msg.find(absl::StrCat("\"", text, "\"")), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::string(fragment)), std::string::npos) << msg;
}

TEST(MacAddress, RejectsEmptyText) { ExpectError("", "empty"); }
TEST(MacAddress, RejectsTooShort) { ExpectError("52:54:00:12:34", "length 14, want 17"); }
TEST(MacAddress, RejectsTooLong) { ExpectError("52:54:00:12:34:56:78", "length 20, want 17"); }
TEST(MacAddress, RejectsNonHexDigitWithItsPosition) {
  ExpectError("52:54:00:1g:34:56", "'g' at position 10 is not a hex digit");
}
TEST(MacAddress, RejectsWrongSeparatorWithItsPosition) {
  ExpectError("52-54-00-12-34-56", "'-' at position 2 should be ':'");
}
TEST(MacAddress, RejectsSingleDigitGroups) {
  ExpectError("2:54:00:12:34:56:", "':' at position 1 is not a hex digit");
}

TEST(MacAddress, KnowsMulticastAndZero) {
  EXPECT_TRUE(MacAddress({0x01, 0, 0x5e, 0, 0, 1}).IsMulticast());
  EXPECT_TRUE(MacAddress().IsZero());
  EXPECT_FALSE(MacAddress({0x52, 0x54, 0, 0, 0, 1}).IsZero());
}

}  // namespace
}  // namespace ferry
