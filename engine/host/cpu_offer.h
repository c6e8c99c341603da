#pragma once
// Whether this host can give an incoming VM the CPU features its source gave it.

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace ferry {

// FailedPrecondition naming the first few of `wanted` missing from `offered` (or unknown names).
absl::Status CheckCpuFeaturesOffered(const std::vector<std::string>& wanted, const std::vector<std::string>& offered);

}  // namespace ferry
