#include "engine/kvm/kvm_system.h"

#include <fcntl.h>

#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/kvm/kvm_abi.h"
#include "engine/kvm/kvm_fd.h"

namespace ferry {

absl::StatusOr<KvmSystem> KvmSystem::Open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError(absl::StrCat("open ", path, " (is KVM available to this user?)"));
  ASSIGN_OR_RETURN(int version, KvmIoctl(fd.get(), KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION"));
  if (version != KVM_API_VERSION) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " reports KVM API version ", version, ", Ferry needs ", KVM_API_VERSION));
  }
  return KvmSystem(std::move(fd));
}

int KvmSystem::CheckExtension(int cap) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

absl::StatusOr<int> KvmSystem::VcpuMmapSize() const {
  return KvmIoctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE");
}

absl::StatusOr<std::vector<kvm_cpuid_entry2>> KvmSystem::SupportedCpuid() const {
  // The kernel says E2BIG until the buffer is large enough; grow until it fits.
  for (uint32_t n = 64; n <= 4096; n *= 2) {
    size_t bytes = sizeof(KvmCpuid2Header) + n * sizeof(kvm_cpuid_entry2);
    auto buf = std::make_unique<uint8_t[]>(bytes);
    auto* c = reinterpret_cast<KvmCpuid2Header*>(buf.get());
    c->nent = n;
    if (::ioctl(fd_.get(), kKvmGetSupportedCpuid, c) == 0) {
      std::vector<kvm_cpuid_entry2> entries(c->nent);
      std::memcpy(entries.data(), buf.get() + sizeof(KvmCpuid2Header), c->nent * sizeof(kvm_cpuid_entry2));
      return entries;
    }
    if (errno != E2BIG) return ErrnoError("KVM_GET_SUPPORTED_CPUID");
  }
  return absl::InternalError("KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
}

absl::StatusOr<std::vector<uint32_t>> KvmSystem::MsrIndexList() const {
  KvmMsrListHeader probe{0};
  if (::ioctl(fd_.get(), kKvmGetMsrIndexList, &probe) < 0 && errno != E2BIG) {
    return ErrnoError("KVM_GET_MSR_INDEX_LIST");
  }
  uint32_t n = probe.nmsrs;
  auto buf = std::make_unique<uint8_t[]>(sizeof(KvmMsrListHeader) + n * sizeof(uint32_t));
  auto* list = reinterpret_cast<KvmMsrListHeader*>(buf.get());
  list->nmsrs = n;
  RETURN_IF_ERROR(KvmIoctlStatus(fd_.get(), kKvmGetMsrIndexList, list, "KVM_GET_MSR_INDEX_LIST"));
  std::vector<uint32_t> indices(list->nmsrs);
  std::memcpy(indices.data(), buf.get() + sizeof(KvmMsrListHeader), indices.size() * sizeof(uint32_t));
  return indices;
}

absl::StatusOr<UniqueFd> KvmSystem::CreateVm() const {
  ASSIGN_OR_RETURN(int fd, KvmIoctl(fd_.get(), KVM_CREATE_VM, 0, "KVM_CREATE_VM"));
  return UniqueFd(fd);
}

bool KvmUsable(std::string* why_not) {
  int fd = ::open(kKvmDevicePath, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    if (why_not) *why_not = absl::StrCat(kKvmDevicePath, ": ", strerror(errno));
    return false;
  }
  ::close(fd);
  return true;
}

}  // namespace ferry
