#pragma once
// Parses human sizes and rates as the CLI and spec files write them: "256MiB", "1GiB", "4096".

#include <cstdint>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace ferry {

// Bytes from "N", "NKiB", "NMiB", "NGiB" (also K/M/G, KB/MB/GB meaning the binary units).
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);

// MiB/s from "50", "50MiB/s", "1GiB/s"; 0 means unlimited.
absl::StatusOr<double> ParseRateMiBps(absl::string_view text);

}  // namespace ferry
