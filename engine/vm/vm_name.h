#pragma once
// The one rule for a VM name, checked wherever a name enters (Agent API, a peer's start, a spec
// file, the CLI): a name becomes a directory under the agent's data dir, so it must be a single
// harmless path component.

#include <cstddef>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace ferry {

inline constexpr size_t kMaxVmNameLength = 64;

// OK for 1..64 characters of [A-Za-z0-9._-] starting with a letter or digit and without "..";
// otherwise InvalidArgument naming what is wrong (the name itself quoted and cut short).
absl::Status ValidateVmName(absl::string_view name);

}  // namespace ferry
