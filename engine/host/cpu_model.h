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

// What pinning VMs to the baseline model costs one host.
struct HostCpuLoss {
  std::string name;
  std::string vendor;               // "" when its facts name none
  std::vector<std::string> loses;  // features the host has that the model lacks
};

struct CpuBaseline {
  // The newest named model or x86-64 level (the one with the most features; CPU generations add
  // features) inside every host's set; never one without long mode ("lm") when every host has it.
  // "" if none fits.
  std::string model;
  std::string vendor;                 // the vendor of every host that names one; "" if none do or they differ
  bool vendors_differ = false;        // two hosts name different vendors
  std::vector<std::string> features;  // every feature all hosts have
  std::vector<std::string> extra;     // features beyond the model's
  std::vector<HostCpuLoss> hosts;     // in the order given
};

// Features common to all `hosts`, and the best named model within them.
absl::StatusOr<CpuBaseline> BaselineCpu(const std::vector<HostFacts>& hosts);

// BaselineCpu's model for two hosts, "" when none fits or the CPU map is unavailable: what a
// CPU_FEATURE_MISSING finding advises (PrecheckAdvice). Costs a CPU-map expansion per model
// (~0.4 s), so callers ask only when a CPU feature is missing.
std::string CommonCpuModel(const HostFacts& a, const HostFacts& b);

}  // namespace ferry
