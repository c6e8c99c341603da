#include "engine/base/size_parse.h"

#include <cctype>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace ferry {
namespace {

struct Split {
  std::string number;
  std::string unit;
};

Split SplitNumberUnit(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  return {std::string(text.substr(0, i)), absl::AsciiStrToLower(absl::StripAsciiWhitespace(text.substr(i)))};
}

absl::StatusOr<uint64_t> UnitMultiplier(const std::string& unit, absl::string_view original) {
  if (unit.empty() || unit == "b") return 1;
  if (unit == "k" || unit == "kb" || unit == "kib") return uint64_t{1} << 10;
  if (unit == "m" || unit == "mb" || unit == "mib") return uint64_t{1} << 20;
  if (unit == "g" || unit == "gb" || unit == "gib") return uint64_t{1} << 30;
  if (unit == "t" || unit == "tb" || unit == "tib") return uint64_t{1} << 40;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown size unit in '", original, "' (use B, KiB, MiB, GiB or TiB)"));
}

}  // namespace

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  Split s = SplitNumberUnit(text);
  double value = 0;
  if (s.number.empty() || !absl::SimpleAtod(s.number, &value) || value < 0) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a size (e.g. 256MiB)"));
  }
  auto mult = UnitMultiplier(s.unit, text);
  if (!mult.ok()) return mult.status();
  return static_cast<uint64_t>(value * static_cast<double>(*mult));
}

absl::StatusOr<double> ParseRateMiBps(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  std::string lower = absl::AsciiStrToLower(t);
  absl::string_view body = lower;
  if (!absl::ConsumeSuffix(&body, "/s")) {
    double v = 0;
    if (absl::SimpleAtod(body, &v) && v >= 0) return v;  // bare number: MiB/s
  }
  Split s = SplitNumberUnit(body);
  double value = 0;
  if (s.number.empty() || !absl::SimpleAtod(s.number, &value) || value < 0) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a rate (e.g. 50MiB/s)"));
  }
  auto mult = UnitMultiplier(s.unit.empty() ? "mib" : s.unit, text);
  if (!mult.ok()) return mult.status();
  return value * static_cast<double>(*mult) / static_cast<double>(1 << 20);
}

}  // namespace ferry
