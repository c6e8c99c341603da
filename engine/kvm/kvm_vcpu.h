#pragma once
// A KVM vCPU fd with its mmap'ed kvm_run, and the per-vCPU state ioctls.

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/base/unique_fd.h"
#include "engine/kvm/kvm_abi.h"

namespace ferry {

class KvmVcpu {
 public:
  static absl::StatusOr<std::unique_ptr<KvmVcpu>> Create(UniqueFd fd, uint32_t id, int mmap_size);
  ~KvmVcpu();
  KvmVcpu(const KvmVcpu&) = delete;
  KvmVcpu& operator=(const KvmVcpu&) = delete;

  uint32_t id() const { return id_; }
  int fd() const { return fd_.get(); }
  kvm_run* run() { return run_; }

  // One KVM_RUN; returns -errno on failure (EINTR is how a kick shows up), 0 on an exit.
  int Run();

  absl::StatusOr<kvm_regs> GetRegs();
  absl::Status SetRegs(const kvm_regs& r);
  absl::StatusOr<kvm_sregs> GetSregs();
  absl::Status SetSregs(const kvm_sregs& s);
  absl::StatusOr<kvm_fpu> GetFpu();
  absl::Status SetFpu(const kvm_fpu& f);
  absl::StatusOr<KvmXsave> GetXsave();
  absl::Status SetXsave(const KvmXsave& x);
  absl::StatusOr<kvm_xcrs> GetXcrs();
  absl::Status SetXcrs(const kvm_xcrs& x);
  absl::StatusOr<kvm_lapic_state> GetLapic();
  absl::Status SetLapic(const kvm_lapic_state& l);
  absl::StatusOr<kvm_vcpu_events> GetEvents();
  absl::Status SetEvents(const kvm_vcpu_events& e);
  absl::StatusOr<kvm_mp_state> GetMpState();
  absl::Status SetMpState(const kvm_mp_state& m);
  absl::StatusOr<kvm_debugregs> GetDebugRegs();
  absl::Status SetDebugRegs(const kvm_debugregs& d);
  absl::Status SetCpuid(const std::vector<kvm_cpuid_entry2>& entries);
  absl::StatusOr<uint32_t> GetTscKhz();
  absl::Status SetTscKhz(uint32_t khz);
  // Reads the given MSRs; entries KVM could not read are dropped (KVM stops at the first).
  absl::StatusOr<std::vector<kvm_msr_entry>> GetMsrs(const std::vector<uint32_t>& indices);
  // Writes all `entries`; an MSR KVM refuses is an error naming its index.
  absl::Status SetMsrs(const std::vector<kvm_msr_entry>& entries);
  absl::Status KvmclockCtrl();

 private:
  KvmVcpu(UniqueFd fd, uint32_t id, kvm_run* run, int mmap_size)
      : fd_(std::move(fd)), id_(id), run_(run), mmap_size_(mmap_size) {}

  UniqueFd fd_;
  uint32_t id_;
  kvm_run* run_;
  int mmap_size_;
};

}  // namespace ferry
