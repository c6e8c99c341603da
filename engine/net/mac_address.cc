#include "engine/net/mac_address.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace ferry {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::Status ParseError(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid MAC address \"", text, "\": ", why,
                   " (expected six hex pairs like 52:54:00:12:34:56)"));
}

}  // namespace

absl::StatusOr<MacAddress> MacAddress::Parse(absl::string_view text) {
  // "xx:" * 5 + "xx"
  constexpr size_t kTextSize = kSize * 3 - 1;
  if (text.empty()) return ParseError(text, "empty");
  if (text.size() != kTextSize) {
    return ParseError(text, absl::StrCat("length ", text.size(), ", want ", kTextSize));
  }
  std::array<uint8_t, kSize> bytes{};
  for (size_t i = 0; i < kSize; ++i) {
    const size_t pos = i * 3;
    const int hi = HexValue(text[pos]);
    const int lo = HexValue(text[pos + 1]);
    if (hi < 0 || lo < 0) {
      const size_t bad = hi < 0 ? pos : pos + 1;
      return ParseError(text, absl::StrCat("'", text.substr(bad, 1), "' at position ", bad,
                                           " is not a hex digit"));
    }
    bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
    if (i + 1 < kSize && text[pos + 2] != ':') {
      return ParseError(text, absl::StrCat("'", text.substr(pos + 2, 1), "' at position ",
                                           pos + 2, " should be ':'"));
    }
  }
  return MacAddress(bytes);
}

std::string MacAddress::ToString() const {
  char buf[kSize * 3];
  std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", bytes_[0], bytes_[1],
                bytes_[2], bytes_[3], bytes_[4], bytes_[5]);
  return std::string(buf, kSize * 3 - 1);
}

}  // namespace ferry
