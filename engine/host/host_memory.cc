#include "engine/host/host_memory.h"

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace ferry {

absl::StatusOr<uint64_t> ParseMemAvailable(absl::string_view meminfo) {
  for (absl::string_view line : absl::StrSplit(meminfo, '\n')) {
    if (!absl::ConsumePrefix(&line, "MemAvailable:")) continue;
    line = absl::StripAsciiWhitespace(line);
    uint64_t kib = 0;
    if (!absl::ConsumeSuffix(&line, "kB") || !absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kib)) {
      return absl::InternalError("/proc/meminfo: MemAvailable is not a number of kB");
    }
    return kib * 1024;
  }
  return absl::InternalError("/proc/meminfo has no MemAvailable line");
}

absl::StatusOr<uint64_t> ReadMemAvailableBytes() {
  std::ifstream in("/proc/meminfo");
  if (!in) return absl::InternalError("cannot read /proc/meminfo");
  std::stringstream text;
  text << in.rdbuf();
  return ParseMemAvailable(text.str());
}

}  // namespace ferry
