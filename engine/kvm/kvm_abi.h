#pragma once
// C++-safe layouts of the variable-sized KVM structs. Debian 12's uapi headers declare their
// trailing arrays with __DECLARE_FLEX_ARRAY, which in C++ inserts an empty struct (size 1): the
// array moves 4 bytes and sizeof grows, which also changes the ioctl numbers (they encode the
// size). KVM then answers EINVAL/ENOTTY. These mirror the kernel's C layouts exactly.

#include <linux/kvm.h>

#include <cstdint>

namespace ferry {

struct KvmCpuid2Header {  // struct kvm_cpuid2 without entries
  uint32_t nent;
  uint32_t padding;
};
struct KvmMsrsHeader {  // struct kvm_msrs without entries
  uint32_t nmsrs;
  uint32_t pad;
};
struct KvmMsrListHeader {  // struct kvm_msr_list without indices
  uint32_t nmsrs;
};
struct KvmXsave {  // struct kvm_xsave as KVM_GET_XSAVE/KVM_SET_XSAVE use it (4 KiB)
  uint32_t region[1024];
};
static_assert(sizeof(KvmCpuid2Header) == 8 && sizeof(KvmMsrsHeader) == 8 && sizeof(KvmXsave) == 4096);

inline constexpr unsigned long kKvmGetSupportedCpuid = _IOWR(KVMIO, 0x05, KvmCpuid2Header);
inline constexpr unsigned long kKvmSetCpuid2 = _IOW(KVMIO, 0x90, KvmCpuid2Header);
inline constexpr unsigned long kKvmGetMsrIndexList = _IOWR(KVMIO, 0x02, KvmMsrListHeader);
inline constexpr unsigned long kKvmGetMsrs = _IOWR(KVMIO, 0x88, KvmMsrsHeader);
inline constexpr unsigned long kKvmSetMsrs = _IOW(KVMIO, 0x89, KvmMsrsHeader);
inline constexpr unsigned long kKvmGetXsave = _IOR(KVMIO, 0xa4, KvmXsave);
inline constexpr unsigned long kKvmSetXsave = _IOW(KVMIO, 0xa5, KvmXsave);

}  // namespace ferry
