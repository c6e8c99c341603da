#pragma once
// vm.yaml, a VM directory's configuration (docs/datastores.md). Versioned: format_version 1 holds
// the VmSpec fields (name, memory, vcpus, backend, workload, cpu, nics, image) and the file disks
// as paths relative to the VM directory. A reader refuses a newer format_version, unknown fields and
// a disk path that leaves the directory; it never changes a file.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "engine/vm/vm_spec.h"

namespace ferry {

inline constexpr char kVmConfigFile[] = "vm.yaml";
inline constexpr char kConsoleLogFile[] = "console.log";
inline constexpr uint64_t kVmConfigFormatVersion = 1;

// The spec in `vm_dir`/vm.yaml with each file disk's path made absolute under `vm_dir` and the console
// log set to `vm_dir`/console.log. Does not look at the disks themselves (see OpenVmDirectory).
absl::StatusOr<VmSpec> LoadVmConfig(const std::string& vm_dir);

// `spec` as vm.yaml text; each file disk's path must already be relative to the VM directory.
absl::StatusOr<std::string> FormatVmConfig(const VmSpec& spec);

// Writes vm.yaml into `vm_dir` (a temporary file renamed over it, so a reader never sees half).
absl::Status WriteVmConfig(const std::string& vm_dir, const VmSpec& spec);

// OK when `relative` names a file inside a VM directory: not absolute, not empty, no "..", no
// "." component. Else an error saying why.
absl::Status CheckPathInsideVmDirectory(const std::string& relative);

}  // namespace ferry
