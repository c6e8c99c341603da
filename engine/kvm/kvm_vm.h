#pragma once
// A KVM VM fd: memory slots, in-kernel irqchip, dirty log, clock.

#include <linux/kvm.h>

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "engine/base/unique_fd.h"

namespace ferry {

class KvmVm {
 public:
  explicit KvmVm(UniqueFd fd) : fd_(std::move(fd)) {}
  int fd() const { return fd_.get(); }

  absl::Status SetUserMemoryRegion(uint32_t slot, uint64_t gpa, uint64_t size, void* host, uint32_t flags);
  absl::Status SetTssAddr(uint64_t gpa);
  absl::Status SetIdentityMapAddr(uint64_t gpa);
  absl::Status CreateIrqchip();
  // Fills `words` (one bit per page of the slot) and clears the log (KVM_GET_DIRTY_LOG).
  absl::Status GetDirtyLog(uint32_t slot, std::span<uint64_t> words);
  absl::StatusOr<kvm_clock_data> GetClock();
  absl::Status SetClock(const kvm_clock_data& clock);
  // chip: KVM_IRQCHIP_PIC_MASTER / PIC_SLAVE / IOAPIC.
  absl::StatusOr<kvm_irqchip> GetIrqchip(uint32_t chip);
  absl::Status SetIrqchip(const kvm_irqchip& chip);
  absl::StatusOr<UniqueFd> CreateVcpu(uint32_t id);

 private:
  UniqueFd fd_;
};

}  // namespace ferry
