#include "engine/vm/kvm_state.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"

namespace ferry {
namespace {

template <typename T>
std::string ToBlob(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof(T));
}

template <typename T>
absl::Status CheckBlob(const std::string& blob, const char* field, const char* type, const std::string& who) {
  if (blob.size() != sizeof(T)) {
    return absl::InvalidArgumentError(absl::StrCat(who, " field '", field, "' is ", blob.size(),
                                                   " bytes, expected ", sizeof(T), " (struct ", type, ")"));
  }
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<T> FromBlob(const std::string& blob, const char* field, const char* type, const std::string& who) {
  RETURN_IF_ERROR(CheckBlob<T>(blob, field, type, who));
  T v;
  std::memcpy(&v, blob.data(), sizeof(T));
  return v;
}

std::string VcpuName(uint32_t index) { return absl::StrCat("vCPU ", index); }

}  // namespace

absl::StatusOr<std::vector<kvm_cpuid_entry2>> CpuidFromBlob(const std::string& blob, uint32_t vcpu) {
  if (blob.empty() || blob.size() % sizeof(kvm_cpuid_entry2) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(VcpuName(vcpu), " field 'cpuid' is ", blob.size(),
                                                   " bytes, expected a non-zero multiple of ",
                                                   sizeof(kvm_cpuid_entry2), " (struct kvm_cpuid_entry2)"));
  }
  std::vector<kvm_cpuid_entry2> entries(blob.size() / sizeof(kvm_cpuid_entry2));
  std::memcpy(entries.data(), blob.data(), blob.size());
  return entries;
}

absl::Status ValidateVcpuState(const v1::VcpuState& s) {
  std::string who = VcpuName(s.index());
  RETURN_IF_ERROR(CheckBlob<kvm_regs>(s.regs(), "regs", "kvm_regs", who));
  RETURN_IF_ERROR(CheckBlob<kvm_sregs>(s.sregs(), "sregs", "kvm_sregs", who));
  if (!s.xsave().empty()) {
    RETURN_IF_ERROR(CheckBlob<KvmXsave>(s.xsave(), "xsave", "kvm_xsave", who));
  } else {
    RETURN_IF_ERROR(CheckBlob<kvm_fpu>(s.fpu(), "fpu", "kvm_fpu", who));
  }
  if (!s.xcrs().empty()) RETURN_IF_ERROR(CheckBlob<kvm_xcrs>(s.xcrs(), "xcrs", "kvm_xcrs", who));
  RETURN_IF_ERROR(CheckBlob<kvm_lapic_state>(s.lapic(), "lapic", "kvm_lapic_state", who));
  RETURN_IF_ERROR(CheckBlob<kvm_vcpu_events>(s.events(), "events", "kvm_vcpu_events", who));
  RETURN_IF_ERROR(CheckBlob<kvm_mp_state>(s.mp_state(), "mp_state", "kvm_mp_state", who));
  RETURN_IF_ERROR(CheckBlob<kvm_debugregs>(s.debugregs(), "debugregs", "kvm_debugregs", who));
  return CpuidFromBlob(s.cpuid(), s.index()).status();
}

absl::Status ValidateKvmVmState(const v1::KvmVmState& s) {
  RETURN_IF_ERROR(CheckBlob<kvm_clock_data>(s.clock(), "clock", "kvm_clock_data", "VM"));
  RETURN_IF_ERROR(CheckBlob<kvm_irqchip>(s.pic_master(), "pic_master", "kvm_irqchip", "VM"));
  RETURN_IF_ERROR(CheckBlob<kvm_irqchip>(s.pic_slave(), "pic_slave", "kvm_irqchip", "VM"));
  RETURN_IF_ERROR(CheckBlob<kvm_irqchip>(s.ioapic(), "ioapic", "kvm_irqchip", "VM"));
  return absl::OkStatus();
}

absl::StatusOr<v1::VcpuState> SaveVcpuState(KvmVcpu& vcpu, const std::vector<uint32_t>& msr_indices,
                                            const std::vector<kvm_cpuid_entry2>& cpuid) {
  v1::VcpuState s;
  s.set_index(vcpu.id());
  ASSIGN_OR_RETURN(kvm_mp_state mp, vcpu.GetMpState());
  s.set_mp_state(ToBlob(mp));
  ASSIGN_OR_RETURN(kvm_regs regs, vcpu.GetRegs());
  s.set_regs(ToBlob(regs));
  ASSIGN_OR_RETURN(kvm_sregs sregs, vcpu.GetSregs());
  s.set_sregs(ToBlob(sregs));
  ASSIGN_OR_RETURN(KvmXsave xsave, vcpu.GetXsave());
  s.set_xsave(ToBlob(xsave));
  ASSIGN_OR_RETURN(kvm_xcrs xcrs, vcpu.GetXcrs());
  s.set_xcrs(ToBlob(xcrs));
  ASSIGN_OR_RETURN(kvm_debugregs dr, vcpu.GetDebugRegs());
  s.set_debugregs(ToBlob(dr));
  ASSIGN_OR_RETURN(kvm_lapic_state lapic, vcpu.GetLapic());
  s.set_lapic(ToBlob(lapic));
  ASSIGN_OR_RETURN(std::vector<kvm_msr_entry> msrs, vcpu.GetMsrs(msr_indices));
  if (msrs.size() != msr_indices.size()) {
    return absl::InternalError(absl::StrCat("KVM_GET_MSRS on vCPU ", vcpu.id(), " read ", msrs.size(), " of ",
                                            msr_indices.size(), " MSRs; stopped at 0x",
                                            absl::Hex(msr_indices[msrs.size()])));
  }
  for (const kvm_msr_entry& m : msrs) {
    v1::MsrEntry* e = s.add_msrs();
    e->set_index(m.index);
    e->set_data(m.data);
  }
  ASSIGN_OR_RETURN(kvm_vcpu_events events, vcpu.GetEvents());
  s.set_events(ToBlob(events));
  ASSIGN_OR_RETURN(uint32_t khz, vcpu.GetTscKhz());
  s.set_tsc_khz(khz);
  s.set_cpuid(std::string(reinterpret_cast<const char*>(cpuid.data()), cpuid.size() * sizeof(kvm_cpuid_entry2)));
  return s;
}

absl::Status RestoreVcpuState(KvmVcpu& vcpu, const v1::VcpuState& s) {
  RETURN_IF_ERROR(ValidateVcpuState(s));
  std::string who = VcpuName(s.index());
  ASSIGN_OR_RETURN(auto cpuid, CpuidFromBlob(s.cpuid(), s.index()));
  RETURN_IF_ERROR(vcpu.SetCpuid(cpuid));
  ASSIGN_OR_RETURN(auto mp, FromBlob<kvm_mp_state>(s.mp_state(), "mp_state", "kvm_mp_state", who));
  RETURN_IF_ERROR(vcpu.SetMpState(mp));
  ASSIGN_OR_RETURN(auto regs, FromBlob<kvm_regs>(s.regs(), "regs", "kvm_regs", who));
  RETURN_IF_ERROR(vcpu.SetRegs(regs));
  ASSIGN_OR_RETURN(auto sregs, FromBlob<kvm_sregs>(s.sregs(), "sregs", "kvm_sregs", who));
  RETURN_IF_ERROR(vcpu.SetSregs(sregs));
  if (!s.xsave().empty()) {
    ASSIGN_OR_RETURN(auto xsave, FromBlob<KvmXsave>(s.xsave(), "xsave", "kvm_xsave", who));
    RETURN_IF_ERROR(vcpu.SetXsave(xsave));
  } else {
    ASSIGN_OR_RETURN(auto fpu, FromBlob<kvm_fpu>(s.fpu(), "fpu", "kvm_fpu", who));
    RETURN_IF_ERROR(vcpu.SetFpu(fpu));
  }
  if (!s.xcrs().empty()) {
    ASSIGN_OR_RETURN(auto xcrs, FromBlob<kvm_xcrs>(s.xcrs(), "xcrs", "kvm_xcrs", who));
    RETURN_IF_ERROR(vcpu.SetXcrs(xcrs));
  }
  ASSIGN_OR_RETURN(auto dr, FromBlob<kvm_debugregs>(s.debugregs(), "debugregs", "kvm_debugregs", who));
  RETURN_IF_ERROR(vcpu.SetDebugRegs(dr));
  ASSIGN_OR_RETURN(auto lapic, FromBlob<kvm_lapic_state>(s.lapic(), "lapic", "kvm_lapic_state", who));
  RETURN_IF_ERROR(vcpu.SetLapic(lapic));
  if (s.tsc_khz() != 0) {
    ASSIGN_OR_RETURN(uint32_t khz, vcpu.GetTscKhz());
    // Same frequency is the common case; a different one needs TSC scaling on this host.
    if (khz != s.tsc_khz()) {
      absl::Status st = vcpu.SetTscKhz(s.tsc_khz());
      if (!st.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(who, ": saved TSC runs at ", s.tsc_khz(),
                                                          " kHz, this host at ", khz, " kHz: ", st.message()));
      }
    }
  }
  std::vector<kvm_msr_entry> msrs;
  for (const v1::MsrEntry& m : s.msrs()) msrs.push_back(kvm_msr_entry{m.index(), 0, m.data()});
  if (!msrs.empty()) {
    absl::Status st = vcpu.SetMsrs(msrs);
    if (!st.ok()) return absl::Status(st.code(), absl::StrCat(who, ": ", st.message()));
  }
  ASSIGN_OR_RETURN(auto events, FromBlob<kvm_vcpu_events>(s.events(), "events", "kvm_vcpu_events", who));
  // GET does not mark these valid, but the saved values are the whole truth: restore them too.
  events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
  RETURN_IF_ERROR(vcpu.SetEvents(events));
  return absl::OkStatus();
}

absl::StatusOr<v1::KvmVmState> SaveKvmVmState(KvmVm& vm) {
  v1::KvmVmState s;
  ASSIGN_OR_RETURN(kvm_clock_data clock, vm.GetClock());
  s.set_clock(ToBlob(clock));
  ASSIGN_OR_RETURN(kvm_irqchip master, vm.GetIrqchip(KVM_IRQCHIP_PIC_MASTER));
  s.set_pic_master(ToBlob(master));
  ASSIGN_OR_RETURN(kvm_irqchip slave, vm.GetIrqchip(KVM_IRQCHIP_PIC_SLAVE));
  s.set_pic_slave(ToBlob(slave));
  ASSIGN_OR_RETURN(kvm_irqchip ioapic, vm.GetIrqchip(KVM_IRQCHIP_IOAPIC));
  s.set_ioapic(ToBlob(ioapic));
  return s;
}

absl::Status RestoreKvmVmState(KvmVm& vm, const v1::KvmVmState& s) {
  RETURN_IF_ERROR(ValidateKvmVmState(s));
  ASSIGN_OR_RETURN(auto master, FromBlob<kvm_irqchip>(s.pic_master(), "pic_master", "kvm_irqchip", "VM"));
  RETURN_IF_ERROR(vm.SetIrqchip(master));
  ASSIGN_OR_RETURN(auto slave, FromBlob<kvm_irqchip>(s.pic_slave(), "pic_slave", "kvm_irqchip", "VM"));
  RETURN_IF_ERROR(vm.SetIrqchip(slave));
  ASSIGN_OR_RETURN(auto ioapic, FromBlob<kvm_irqchip>(s.ioapic(), "ioapic", "kvm_irqchip", "VM"));
  RETURN_IF_ERROR(vm.SetIrqchip(ioapic));
  ASSIGN_OR_RETURN(auto clock, FromBlob<kvm_clock_data>(s.clock(), "clock", "kvm_clock_data", "VM"));
  return vm.SetClock(clock);
}

}  // namespace ferry
