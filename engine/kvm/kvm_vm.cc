#include "engine/kvm/kvm_vm.h"

#include "engine/base/status.h"
#include "engine/kvm/kvm_fd.h"

namespace ferry {

absl::Status KvmVm::SetUserMemoryRegion(uint32_t slot, uint64_t gpa, uint64_t size, void* host,
                                        uint32_t flags) {
  kvm_userspace_memory_region r{};
  r.slot = slot;
  r.flags = flags;
  r.guest_phys_addr = gpa;
  r.memory_size = size;
  r.userspace_addr = reinterpret_cast<uint64_t>(host);
  return KvmIoctlStatus(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r, "KVM_SET_USER_MEMORY_REGION");
}

absl::Status KvmVm::SetTssAddr(uint64_t gpa) {
  return KvmIoctlStatus(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(gpa), "KVM_SET_TSS_ADDR");
}

absl::Status KvmVm::SetIdentityMapAddr(uint64_t gpa) {
  uint64_t addr = gpa;
  return KvmIoctlStatus(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &addr, "KVM_SET_IDENTITY_MAP_ADDR");
}

absl::Status KvmVm::CreateIrqchip() {
  return KvmIoctlStatus(fd_.get(), KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP");
}

absl::Status KvmVm::GetDirtyLog(uint32_t slot, std::span<uint64_t> words) {
  kvm_dirty_log log{};
  log.slot = slot;
  log.dirty_bitmap = words.data();
  return KvmIoctlStatus(fd_.get(), KVM_GET_DIRTY_LOG, &log, "KVM_GET_DIRTY_LOG");
}

absl::Status KvmVm::ClearDirtyLog(uint32_t slot, uint64_t first_page, uint32_t num_pages,
                                  std::span<const uint64_t> words) {
  if (first_page % 64 != 0 || words.size() < (uint64_t{num_pages} + 63) / 64) {
    return absl::InvalidArgumentError("KVM_CLEAR_DIRTY_LOG: first page not 64-aligned or bitmap too short");
  }
  kvm_clear_dirty_log log{};
  log.slot = slot;
  log.num_pages = num_pages;
  log.first_page = first_page;
  log.dirty_bitmap = const_cast<uint64_t*>(words.data());  // KVM only reads it
  return KvmIoctlStatus(fd_.get(), KVM_CLEAR_DIRTY_LOG, &log, "KVM_CLEAR_DIRTY_LOG");
}

absl::Status KvmVm::EnableCap(uint32_t cap, uint64_t arg0) {
  kvm_enable_cap c{};
  c.cap = cap;
  c.args[0] = arg0;
  return KvmIoctlStatus(fd_.get(), KVM_ENABLE_CAP, &c, "KVM_ENABLE_CAP");
}

absl::StatusOr<kvm_clock_data> KvmVm::GetClock() {
  kvm_clock_data c{};
  RETURN_IF_ERROR(KvmIoctlStatus(fd_.get(), KVM_GET_CLOCK, &c, "KVM_GET_CLOCK"));
  return c;
}

absl::Status KvmVm::SetClock(const kvm_clock_data& clock) {
  kvm_clock_data c = clock;
  // Only the clock value is restored; the host-time fields of the saving host mean nothing here.
  c.flags = 0;
  return KvmIoctlStatus(fd_.get(), KVM_SET_CLOCK, &c, "KVM_SET_CLOCK");
}

absl::StatusOr<kvm_irqchip> KvmVm::GetIrqchip(uint32_t chip) {
  kvm_irqchip c{};
  c.chip_id = chip;
  RETURN_IF_ERROR(KvmIoctlStatus(fd_.get(), KVM_GET_IRQCHIP, &c, "KVM_GET_IRQCHIP"));
  return c;
}

absl::Status KvmVm::SetIrqchip(const kvm_irqchip& chip) {
  kvm_irqchip c = chip;
  return KvmIoctlStatus(fd_.get(), KVM_SET_IRQCHIP, &c, "KVM_SET_IRQCHIP");
}

absl::StatusOr<UniqueFd> KvmVm::CreateVcpu(uint32_t id) {
  ASSIGN_OR_RETURN(int fd, KvmIoctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id),
                                    "KVM_CREATE_VCPU"));
  return UniqueFd(fd);
}

}  // namespace ferry
