#pragma once
// A VM spec as a YAML file (docs/prechecks.md, "VM spec file"). Every error names the file and
// the field. CPU model names are checked against the CPU map by engine/host's ResolveVmCpu.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/vm/vm_spec.h"

namespace ferry {

absl::StatusOr<VmSpec> LoadVmSpecFile(const std::string& path);

// OK for a unicast, non-zero "52:54:00:12:34:56" (either case); else an error saying why.
absl::Status ValidateMac(absl::string_view mac);

const char* DiskKindName(DiskKind kind);

}  // namespace ferry
