#pragma once
// How much memory this host can still give a VM: the kernel's MemAvailable estimate.

#include <cstdint>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace ferry {

// MemAvailable from the text of /proc/meminfo, in bytes.
absl::StatusOr<uint64_t> ParseMemAvailable(absl::string_view meminfo);
absl::StatusOr<uint64_t> ReadMemAvailableBytes();

}  // namespace ferry
