#include "engine/kvm/kvm_vcpu.h"

#include <sys/mman.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/status.h"
#include "engine/kvm/kvm_abi.h"
#include "engine/kvm/kvm_fd.h"

namespace ferry {

absl::StatusOr<std::unique_ptr<KvmVcpu>> KvmVcpu::Create(UniqueFd fd, uint32_t id, int mmap_size) {
  void* p = mmap(nullptr, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return ErrnoError(absl::StrCat("mmap kvm_run of vCPU ", id));
  return std::unique_ptr<KvmVcpu>(new KvmVcpu(std::move(fd), id, static_cast<kvm_run*>(p), mmap_size));
}

KvmVcpu::~KvmVcpu() { munmap(run_, mmap_size_); }

int KvmVcpu::Run() {
  int r = ::ioctl(fd_.get(), KVM_RUN, 0);
  return r < 0 ? -errno : 0;
}

// Get/Set pairs differ only in the request and the struct.
#define FERRY_VCPU_GET_SET(Type, Getter, Setter, GET, SET)                      \
  absl::StatusOr<Type> KvmVcpu::Getter() {                                      \
    Type v{};                                                                   \
    RETURN_IF_ERROR(KvmIoctlStatus(fd_.get(), GET, &v, #GET));                  \
    return v;                                                                   \
  }                                                                             \
  absl::Status KvmVcpu::Setter(const Type& in) {                                \
    Type v = in;                                                                \
    return KvmIoctlStatus(fd_.get(), SET, &v, #SET);                            \
  }

FERRY_VCPU_GET_SET(kvm_regs, GetRegs, SetRegs, KVM_GET_REGS, KVM_SET_REGS)
FERRY_VCPU_GET_SET(kvm_sregs, GetSregs, SetSregs, KVM_GET_SREGS, KVM_SET_SREGS)
FERRY_VCPU_GET_SET(kvm_fpu, GetFpu, SetFpu, KVM_GET_FPU, KVM_SET_FPU)
FERRY_VCPU_GET_SET(KvmXsave, GetXsave, SetXsave, kKvmGetXsave, kKvmSetXsave)
FERRY_VCPU_GET_SET(kvm_xcrs, GetXcrs, SetXcrs, KVM_GET_XCRS, KVM_SET_XCRS)
FERRY_VCPU_GET_SET(kvm_lapic_state, GetLapic, SetLapic, KVM_GET_LAPIC, KVM_SET_LAPIC)
FERRY_VCPU_GET_SET(kvm_vcpu_events, GetEvents, SetEvents, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS)
FERRY_VCPU_GET_SET(kvm_mp_state, GetMpState, SetMpState, KVM_GET_MP_STATE, KVM_SET_MP_STATE)
FERRY_VCPU_GET_SET(kvm_debugregs, GetDebugRegs, SetDebugRegs, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS)
#undef FERRY_VCPU_GET_SET

absl::Status KvmVcpu::SetCpuid(const std::vector<kvm_cpuid_entry2>& entries) {
  size_t bytes = sizeof(KvmCpuid2Header) + entries.size() * sizeof(kvm_cpuid_entry2);
  auto buf = std::make_unique<uint8_t[]>(bytes);
  auto* c = reinterpret_cast<KvmCpuid2Header*>(buf.get());
  c->nent = static_cast<uint32_t>(entries.size());
  c->padding = 0;
  std::memcpy(buf.get() + sizeof(KvmCpuid2Header), entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  return KvmIoctlStatus(fd_.get(), kKvmSetCpuid2, c, "KVM_SET_CPUID2");
}

absl::StatusOr<uint32_t> KvmVcpu::GetTscKhz() {
  ASSIGN_OR_RETURN(int khz, KvmIoctl(fd_.get(), KVM_GET_TSC_KHZ, 0, "KVM_GET_TSC_KHZ"));
  return static_cast<uint32_t>(khz);
}

absl::Status KvmVcpu::SetTscKhz(uint32_t khz) {
  return KvmIoctlStatus(fd_.get(), KVM_SET_TSC_KHZ, static_cast<unsigned long>(khz), "KVM_SET_TSC_KHZ");
}

namespace {

struct MsrBuffer {
  explicit MsrBuffer(size_t n)
      : storage(std::make_unique<uint8_t[]>(sizeof(KvmMsrsHeader) + n * sizeof(kvm_msr_entry))) {
    msrs()->nmsrs = static_cast<uint32_t>(n);
    msrs()->pad = 0;
  }
  KvmMsrsHeader* msrs() { return reinterpret_cast<KvmMsrsHeader*>(storage.get()); }
  kvm_msr_entry* entries() { return reinterpret_cast<kvm_msr_entry*>(storage.get() + sizeof(KvmMsrsHeader)); }
  std::unique_ptr<uint8_t[]> storage;
};

}  // namespace

absl::StatusOr<std::vector<kvm_msr_entry>> KvmVcpu::GetMsrs(const std::vector<uint32_t>& indices) {
  MsrBuffer buf(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) buf.entries()[i] = kvm_msr_entry{indices[i], 0, 0};
  ASSIGN_OR_RETURN(int n, KvmIoctl(fd_.get(), kKvmGetMsrs, buf.msrs(), "KVM_GET_MSRS"));
  return std::vector<kvm_msr_entry>(buf.entries(), buf.entries() + n);
}

absl::Status KvmVcpu::SetMsrs(const std::vector<kvm_msr_entry>& entries) {
  MsrBuffer buf(entries.size());
  std::copy(entries.begin(), entries.end(), buf.entries());
  ASSIGN_OR_RETURN(int n, KvmIoctl(fd_.get(), kKvmSetMsrs, buf.msrs(), "KVM_SET_MSRS"));
  if (static_cast<size_t>(n) != entries.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KVM_SET_MSRS: KVM refused MSR 0x%x (set %d of %d)", entries[n].index, n, entries.size()));
  }
  return absl::OkStatus();
}

absl::Status KvmVcpu::KvmclockCtrl() {
  return KvmIoctlStatus(fd_.get(), KVM_KVMCLOCK_CTRL, 0, "KVM_KVMCLOCK_CTRL");
}

}  // namespace ferry
