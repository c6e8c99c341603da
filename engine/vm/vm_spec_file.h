#pragma once
// A VM spec as a YAML file (docs/prechecks.md, "VM spec file"). Every error names the file and
// the field. CPU model names are checked against the CPU map by engine/host's ResolveVmCpu.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/vm/vm_spec.h"

namespace ferry {

absl::StatusOr<VmSpec> LoadVmSpecFile(const std::string& path);

class YamlMap;
enum class DiskPathRule {
  kAbsolute,  // a spec file: every disk path absolute
  kAsWritten, // a VM directory's vm.yaml (engine/storage): its caller checks and resolves the paths
};
// The VmSpec fields of a mapping whose keys the caller has already checked (with CheckKeys).
absl::StatusOr<VmSpec> VmSpecFromYaml(const YamlMap& m, DiskPathRule disk_paths);

// OK for a unicast, non-zero "52:54:00:12:34:56" (either case); else an error saying why.
absl::Status ValidateMac(absl::string_view mac);

const char* DiskKindName(DiskKind kind);

}  // namespace ferry
