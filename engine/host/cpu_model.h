#pragma once
// Named CPU models -> CPUID feature lists. libvirt's CPU map supplies the vendor models
// (Nehalem, Haswell-noTSX, EPYC, ...); the x86-64 psABI microarchitecture levels x86-64-v1..v4
// are defined here. A baseline of several hosts is what vSphere calls EVC.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/host/host_facts.h"
#include "engine/vm/vm_spec.h"

namespace ferry {

// Sorted feature names of `model`. NotFound names the model and says where models come from.
absl::StatusOr<std::vector<std::string>> ExpandCpuModel(const std::string& model);

// Every model name ExpandCpuModel accepts.
absl::StatusOr<std::vector<std::string>> KnownCpuModels();

// Fills vm.cpu.features with the model's features plus the listed ones (so the microVM and the
// precheck need no CPU map). Errors are "<origin>: cpu.model: ..." / "<origin>: cpu.features: ...".
// A VM without a cpu section is left as is: it gets the source host's set.
absl::Status ResolveVmCpu(VmSpec& vm, const std::string& origin);

struct CpuBaseline {
  std::string model;                  // the largest named model every host supports ("" if none)
  std::string vendor;                 // common vendor, "" when the hosts differ
  std::vector<std::string> features;  // every feature all hosts have
  std::vector<std::string> extra;     // features beyond the model's
};

// Features common to all `hosts`, and the best named model within them.
absl::StatusOr<CpuBaseline> BaselineCpu(const std::vector<HostFacts>& hosts);

}  // namespace ferry
