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
  // KVM_GET_DIRTY_LOG: fills `words` (one bit per page of the slot). Without manual protection
  // this also clears the log and write-protects the whole slot under KVM's MMU lock; with
  // KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE it only copies the log.
  absl::Status GetDirtyLog(uint32_t slot, std::span<uint64_t> words);
  // KVM_CLEAR_DIRTY_LOG (manual protection): clears the log bits set in `words`, which describe
  // `num_pages` pages of the slot from `first_page` (a multiple of 64; num_pages too unless the
  // range ends the slot), and write-protects those pages again.
  absl::Status ClearDirtyLog(uint32_t slot, uint64_t first_page, uint32_t num_pages,
                             std::span<const uint64_t> words);
  // KVM_ENABLE_CAP on the VM with args[0] = arg0.
  absl::Status EnableCap(uint32_t cap, uint64_t arg0);
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
