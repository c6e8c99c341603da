#pragma once
// A 48-bit Ethernet MAC address, parsed from and formatted as "52:54:00:12:34:56".

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ferry {

class MacAddress {
 public:
  static constexpr size_t kSize = 6;

  MacAddress() = default;
  explicit constexpr MacAddress(const std::array<uint8_t, kSize>& bytes) : bytes_(bytes) {}

  // Six two-digit hex groups separated by ':' (either case). Anything else is an
  // InvalidArgument error that quotes the input and says what is wrong.
  static absl::StatusOr<MacAddress> Parse(absl::string_view text);

  const std::array<uint8_t, kSize>& bytes() const { return bytes_; }
  // Lower-case "52:54:00:12:34:56".
  std::string ToString() const;

  bool IsMulticast() const { return (bytes_[0] & 0x01) != 0; }
  bool IsZero() const { return bytes_ == std::array<uint8_t, kSize>{}; }

  friend bool operator==(const MacAddress&, const MacAddress&) = default;

 private:
  std::array<uint8_t, kSize> bytes_{};
};

}  // namespace ferry
