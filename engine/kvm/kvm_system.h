#pragma once
// The KVM system fd (/dev/kvm): API version, extensions, host-wide CPUID and MSR lists.

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/base/unique_fd.h"

namespace ferry {

inline constexpr char kKvmDevicePath[] = "/dev/kvm";

class KvmSystem {
 public:
  // Opens /dev/kvm and checks the API version (12, the only stable one).
  static absl::StatusOr<KvmSystem> Open(const std::string& path = kKvmDevicePath);

  int fd() const { return fd_.get(); }
  // KVM_CHECK_EXTENSION: 0 = absent, >0 = present (some capabilities return a value).
  int CheckExtension(int cap) const;
  absl::StatusOr<int> VcpuMmapSize() const;
  // KVM_GET_SUPPORTED_CPUID: every leaf KVM can expose to a guest on this host.
  absl::StatusOr<std::vector<kvm_cpuid_entry2>> SupportedCpuid() const;
  // KVM_GET_MSR_INDEX_LIST: MSRs KVM claims it can save/restore (filter with a vCPU before use).
  absl::StatusOr<std::vector<uint32_t>> MsrIndexList() const;
  absl::StatusOr<UniqueFd> CreateVm() const;

 private:
  explicit KvmSystem(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

// True when /dev/kvm exists and can be opened read-write (tests use this to skip).
bool KvmUsable(std::string* why_not = nullptr);

}  // namespace ferry
