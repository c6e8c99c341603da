// The KVM microVM: guest RAM in one memslot (two above 3 GiB: ram_layout.h), in-kernel irqchip, one thread per vCPU running
// KVM_RUN, port-I/O devices on one bus, virtio-blk disks on the MMIO bus. vCPU threads are a small state machine driven by the
// controller: running -> parked (pause) -> running, or -> exited.
#include "engine/vm/micro_vm.h"

#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/clock.h"
#include "engine/base/status.h"
#include "engine/guest/guest_abi.h"
#include "engine/kvm/capabilities.h"
#include "engine/kvm/cpu_features.h"
#include "engine/kvm/kvm_system.h"
#include "engine/kvm/kvm_vcpu.h"
#include "engine/kvm/kvm_vm.h"
#include "engine/vm/guest_monitor.h"
#include "engine/vm/io_bus.h"
#include "engine/vm/kvm_state.h"
#include "engine/vm/multiboot_loader.h"
#include "engine/vm/ram_layout.h"
#include "engine/vm/serial_device.h"
#include "engine/vm/status_port.h"
#include "engine/vm/virtio/blk_device.h"
#include "engine/vm/virtio/guest_ram_access.h"
#include "engine/vm/virtio/mmio_bus.h"
#include "spdlog/spdlog.h"

namespace ferry {
namespace {

// Where QEMU puts them: just below the 4 GiB BIOS area, in the hole between the RAM slots.
constexpr uint64_t kIdentityMapGpa = 0xfffbc000;
constexpr uint64_t kTssGpa = 0xfffbd000;
constexpr uint32_t kMsrMtrrDefType = 0x2ff;
constexpr uint64_t kMtrrEnable = 1 << 11;
constexpr uint64_t kMtrrTypeWriteBack = 6;
constexpr int64_t kPauseTimeoutNs = 5'000'000'000;
// Auto-converge: a throttled vCPU is kicked out of KVM_RUN once a slice and sleeps its share.
constexpr int64_t kThrottleSliceNs = 10'000'000;

int KickSignal() { return SIGRTMIN + 3; }

void InstallKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};  // only interrupts KVM_RUN
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(KickSignal(), &sa, nullptr);
  });
}

uint64_t FileDiskCount(const VmSpec& spec) {
  return std::count_if(spec.disks.begin(), spec.disks.end(), [](const DiskSpec& d) { return d.kind == DiskKind::kFile; });
}

absl::Status ValidateSpec(const VmSpec& spec) {
  if (spec.vcpus < 1 || spec.vcpus > FERRY_MAX_VCPUS) {
    return absl::InvalidArgumentError(
        absl::StrCat("vcpus = ", spec.vcpus, ": the microVM supports 1 to ", FERRY_MAX_VCPUS));
  }
  if (spec.memory_bytes < FERRY_GUEST_MIN_MEMORY || spec.memory_bytes % kPageSize != 0) {
    return absl::InvalidArgumentError(absl::StrCat("memory = ", spec.memory_bytes,
                                                   " bytes: must be a multiple of 4 KiB and at least ",
                                                   FERRY_GUEST_MIN_MEMORY >> 20, " MiB"));
  }
  if (FileDiskCount(spec) > FERRY_VIRTIO_MAX_DISKS) {
    return absl::InvalidArgumentError(absl::StrCat(FileDiskCount(spec), " file disks: the microVM has virtio-blk slots for ",
                                                   FERRY_VIRTIO_MAX_DISKS));
  }
  uint64_t pages = spec.workload.working_set_bytes / kPageSize;
  uint64_t needed = FERRY_GPA_WORKSET + FERRY_WORKLOAD_STATE_BYTES + pages * 4 + spec.workload.working_set_bytes;
  if (needed > spec.memory_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("working set of ", spec.workload.working_set_bytes >> 20,
                                                   " MiB does not fit in ", spec.memory_bytes >> 20,
                                                   " MiB of guest memory"));
  }
  if (needed > FERRY_GUEST_MAX_RAM_VIEW) {
    return absl::InvalidArgumentError(absl::StrCat("working set of ", spec.workload.working_set_bytes >> 20,
                                                   " MiB: the built-in guest maps ", FERRY_GUEST_MAX_RAM_VIEW >> 30,
                                                   " GiB of RAM, its working set must end below that"));
  }
  return absl::OkStatus();
}

// The guest reads its vCPU index from the initial APIC ID, so each vCPU's CPUID must say it.
std::vector<kvm_cpuid_entry2> CpuidForVcpu(std::vector<kvm_cpuid_entry2> entries, uint32_t id) {
  for (kvm_cpuid_entry2& e : entries) {
    if (e.function == 1) e.ebx = (e.ebx & 0x00ffffff) | (id << 24);
    if (e.function == 0xb || e.function == 0x1f) e.edx = id;
    if (e.function == 0x8000001e) e.eax = id;
  }
  return entries;
}

kvm_segment FlatSegment(uint16_t selector, uint8_t type) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;
  s.selector = selector;
  s.type = type;
  s.present = 1;
  s.dpl = 0;
  s.db = 1;
  s.s = 1;
  s.l = 0;
  s.g = 1;
  return s;
}

class MicroVm : public Vm {
 public:
  MicroVm(const VmSpec& spec, bool for_restore, const MicroVmOptions& options, KvmSystem kvm,
          std::unique_ptr<GuestMemory> mem)
      : spec_(spec), for_restore_(for_restore), options_(options), kvm_(std::move(kvm)), mem_(std::move(mem)),
        ram_(GuestRamRanges(mem_->size())), pending_dirty_(mem_->num_pages()) {}
  ~MicroVm() override { (void)Stop(); }

  absl::Status Init();
  absl::Status BootAt(uint32_t entry, uint32_t info_gpa);
  const std::string& cmdline() const { return cmdline_; }

  const VmSpec& spec() const override { return spec_; }
  GuestMemory& memory() override { return *mem_; }
  VmRunState run_state() const override {
    std::lock_guard lock(mu_);
    return state_;
  }
  absl::Status Start() override;
  absl::Status Pause() override;
  absl::Status Resume() override;
  absl::Status Stop() override;
  absl::Status EnableDirtyTracking() override;
  absl::Status DisableDirtyTracking() override;
  absl::Status CollectDirtyPages(DirtyBitmap& out) override;
  absl::StatusOr<v1::VmState> SaveState() override;
  absl::Status RestoreState(const v1::VmState& state) override;
  absl::Status SetThrottle(uint32_t percent) override;
  uint32_t throttle_percent() const override {
    std::lock_guard lock(mu_);
    return throttle_percent_;
  }
  int64_t first_guest_entry_ns() const override { return first_entry_ns_.load(); }
  GuestHealth health() const override { return monitor_.health(); }
  // The file disks' descriptors in order (a same-host VMM upgrade hands them over); before Init,
  // the take-over's disks open already, used instead of their paths.
  std::vector<int> disk_fds() const {
    std::vector<int> fds;
    for (const auto& d : disks_) fds.push_back(d->file_fd());
    return fds;
  }
  void set_handed_disks(std::vector<UniqueFd> fds) { handed_disks_ = std::move(fds); }
  DirtyLogPath dirty_log_path() const { return dirty_log_path_; }
  absl::Status CollectDiskWrites(uint32_t disk, DirtyBitmap& out);
  void StartDiskMirror();
  absl::StatusOr<uint64_t> DiskMirrorStep(uint32_t disk, uint64_t release_through, std::chrono::milliseconds wait,
                                          DirtyBitmap& out);
  void EndDiskMirror();

 private:
  void VcpuLoop(uint32_t index);
  // Handles one exit; false means this vCPU must stop.
  bool HandleExit(KvmVcpu& vcpu);
  void RequestStopLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void KickAllLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a kick: parks while a pause is requested, or sleeps the throttle's share of the slice.
  // False when the vCPU must exit.
  bool ServeKickLocked(std::unique_lock<std::mutex>& lock) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartThrottleThreadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ThrottleLoop();
  absl::Status SetSlotFlags(uint32_t flags);
  // Picks the dirty-log path (KVM's offer AND options_) and enables manual protection if taken.
  absl::Status SetUpDirtyLog();
  // ORs every slot's log into `out` at the slot's memfd pages; with `reprotect` and manual
  // protection, then clears what it reported (the legacy GET has already done so).
  absl::Status HarvestDirtyLog(DirtyBitmap& out, bool reprotect) ABSL_EXCLUSIVE_LOCKS_REQUIRED(dirty_mu_);
  // KVM_CLEAR_DIRTY_LOG of the pages set in `words`, one chunk of the slot per call, skipping
  // chunks with nothing set: KVM holds its MMU lock for one chunk at a time, not the whole slot.
  absl::Status ClearDirtyLogInChunks(uint32_t slot, std::span<const uint64_t> words);
  // One virtio-blk device per file disk, at its MMIO window (docs/virtio_blk.md); extends cmdline_.
  absl::Status AttachDisks();
  // Disks stop taking requests and finish those in flight (pause, stop), or take them again.
  void QuiesceDisks();
  void ResumeDisks();

  VmSpec spec_;
  bool for_restore_;
  MicroVmOptions options_;
  KvmSystem kvm_;
  std::unique_ptr<GuestMemory> mem_;
  std::vector<RamRange> ram_;  // range i is memory slot i
  DirtyLogPath dirty_log_path_ = DirtyLogPath::kGetClears;
  uint64_t clear_chunk_pages_ = 0;
  std::unique_ptr<KvmVm> vm_;
  std::vector<std::unique_ptr<KvmVcpu>> vcpus_;
  std::vector<std::vector<kvm_cpuid_entry2>> cpuid_;  // per vCPU
  std::vector<uint32_t> msr_indices_;                 // MSRs this VM can get and set
  uint32_t tsc_khz_ = 0;
  std::string cmdline_;

  GuestMonitor monitor_;
  IoBus bus_;
  std::unique_ptr<SerialDevice> serial_;
  std::unique_ptr<StatusPort> status_port_;
  MmioBus mmio_;
  // Devices write guest RAM through this view; their writes land in pending_dirty_.
  std::unique_ptr<GuestRamAccess> device_ram_;
  std::vector<std::unique_ptr<VirtioBlkDevice>> disks_;
  // A take-over's file disks, open already (handed over by the VMM it replaces): AttachDisks uses them.
  std::vector<UniqueFd> handed_disks_;
  // Per file disk: 4 KiB blocks its device wrote since the last CollectDiskWrites.
  struct DiskWriteLog {
    std::mutex mu;
    DirtyBitmap blocks ABSL_GUARDED_BY(mu);
  };
  std::vector<std::unique_ptr<DiskWriteLog>> disk_writes_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  VmRunState state_ ABSL_GUARDED_BY(mu_) = VmRunState::kCreated;
  bool restored_ ABSL_GUARDED_BY(mu_) = false;
  bool pause_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  uint32_t parked_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t exited_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_;
  std::vector<bool> thread_live_ ABSL_GUARDED_BY(mu_);  // vCPU thread started and not yet exited
  std::mutex join_mu_;  // serializes Stop() callers joining threads_
  uint32_t throttle_percent_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread throttle_thread_;  // kicks throttled vCPUs; started on a running VM's first throttle
  std::atomic<int64_t> first_entry_ns_{0};

  std::mutex dirty_mu_;
  bool tracking_ ABSL_GUARDED_BY(dirty_mu_) = false;
  // Pages harvested from KVM's log when tracking was disabled, plus pages the VMM itself wrote:
  // reported by the next CollectDirtyPages.
  DirtyBitmap pending_dirty_ ABSL_GUARDED_BY(dirty_mu_);
  std::vector<uint64_t> log_words_ ABSL_GUARDED_BY(dirty_mu_);  // sized for the largest slot
};

absl::Status MicroVm::Init() {
  RETURN_IF_ERROR(CheckKvmCapabilities(kvm_));
  ASSIGN_OR_RETURN(UniqueFd vm_fd, kvm_.CreateVm());
  vm_ = std::make_unique<KvmVm>(std::move(vm_fd));
  RETURN_IF_ERROR(vm_->SetIdentityMapAddr(kIdentityMapGpa));
  RETURN_IF_ERROR(vm_->SetTssAddr(kTssGpa));
  RETURN_IF_ERROR(vm_->CreateIrqchip());
  RETURN_IF_ERROR(SetUpDirtyLog());
  RETURN_IF_ERROR(SetSlotFlags(0));
  uint64_t largest_slot = 0;
  for (const RamRange& r : ram_) largest_slot = std::max(largest_slot, r.bytes >> kPageShift);
  log_words_.assign((largest_slot + 63) / 64, 0);

  ASSIGN_OR_RETURN(std::vector<kvm_cpuid_entry2> cpuid, kvm_.SupportedCpuid());
  if (!spec_.cpu.features.empty()) RETURN_IF_ERROR(RestrictCpuid(cpuid, spec_.cpu.features));
  ASSIGN_OR_RETURN(int mmap_size, kvm_.VcpuMmapSize());
  for (uint32_t i = 0; i < spec_.vcpus; ++i) {
    ASSIGN_OR_RETURN(UniqueFd fd, vm_->CreateVcpu(i));
    ASSIGN_OR_RETURN(auto vcpu, KvmVcpu::Create(std::move(fd), i, mmap_size));
    cpuid_.push_back(CpuidForVcpu(cpuid, i));
    RETURN_IF_ERROR(vcpu->SetCpuid(cpuid_.back()));
    vcpus_.push_back(std::move(vcpu));
  }

  // KVM lists MSRs it knows; keep those this vCPU (with this CPUID) can both read and write back.
  ASSIGN_OR_RETURN(std::vector<uint32_t> listed, kvm_.MsrIndexList());
  for (uint32_t index : listed) {
    auto got = vcpus_[0]->GetMsrs({index});
    if (!got.ok() || got->size() != 1) continue;
    if (vcpus_[0]->SetMsrs(*got).ok()) msr_indices_.push_back(index);
  }
  ASSIGN_OR_RETURN(tsc_khz_, vcpus_[0]->GetTscKhz());
  cmdline_ = absl::StrCat(GuestCommandLine(spec_.workload), " ncpu=", spec_.vcpus, " tsc_khz=", tsc_khz_);

  ASSIGN_OR_RETURN(serial_, SerialDevice::Create(spec_.console_log_path, spec_.console_to_stdout,
                                                 [this](const std::string& line) { monitor_.OnConsoleLine(line); }));
  status_port_ = std::make_unique<StatusPort>(monitor_, [this](int32_t code) {
    std::lock_guard lock(mu_);
    RequestStopLocked();
  });
  bus_.Register(FERRY_COM1_PORT, SerialDevice::kPortCount, serial_.get());
  bus_.Register(FERRY_STATUS_PORT_BASE, FERRY_STATUS_PORT_END - FERRY_STATUS_PORT_BASE, status_port_.get());
  return AttachDisks();
}

absl::Status MicroVm::AttachDisks() {
  device_ram_ = std::make_unique<GuestRamAccess>(*mem_, [this](uint64_t first_page, uint64_t count) {
    std::lock_guard lock(dirty_mu_);
    pending_dirty_.SetRange(first_page, count);
  });
  uint32_t index = 0;
  for (const DiskSpec& disk : spec_.disks) {
    if (disk.kind != DiskKind::kFile) continue;
    const uint32_t irq = FERRY_VIRTIO_IRQ_BASE + index;
    // Level-triggered on the in-kernel PIC and IOAPIC (the microVM always has them).
    auto set_irq = [this, irq](bool level) {
      kvm_irq_level line{};
      line.irq = irq;
      line.level = level ? 1 : 0;
      if (ioctl(vm_->fd(), KVM_IRQ_LINE, &line) != 0) spdlog::warn("KVM_IRQ_LINE {}: {}", irq, strerror(errno));
    };
    auto log = std::make_unique<DiskWriteLog>();
    auto on_write = [log = log.get()](uint64_t offset, uint64_t bytes) {
      std::lock_guard lock(log->mu);
      const uint64_t first = offset / kDiskWriteBlockBytes;
      log->blocks.SetRange(first, (offset + bytes - 1) / kDiskWriteBlockBytes - first + 1);
    };
    // A handed-over disk (same-host upgrade) shares this host's page cache with the VMM it came from.
    UniqueFd handed = index < handed_disks_.size() ? std::move(handed_disks_[index]) : UniqueFd();
    const auto host_cache = disk.filled_by_this_host || handed.valid() ? VirtioBlkDevice::HostCache::kCoherent
                                                                       : VirtioBlkDevice::HostCache::kMayBeStale;
    auto dev = VirtioBlkDevice::Create(disk.path, index, *device_ram_, set_irq, on_write, host_cache, std::move(handed));
    if (!dev.ok()) return absl::Status(dev.status().code(), absl::StrCat("disk ", index, ": ", dev.status().message()));
    {
      std::lock_guard lock(log->mu);
      const uint64_t bytes = (*dev)->capacity_sectors() * kVirtioBlkSectorBytes;
      log->blocks = DirtyBitmap((bytes + kDiskWriteBlockBytes - 1) / kDiskWriteBlockBytes);
    }
    disk_writes_.push_back(std::move(log));
    const uint64_t base = FERRY_GPA_VIRTIO_MMIO_BASE + index * FERRY_VIRTIO_MMIO_STRIDE;
    mmio_.Register(base, FERRY_VIRTIO_MMIO_SIZE, dev->get());
    absl::StrAppend(&cmdline_, absl::StrFormat(" virtio_mmio.device=4K@0x%x:%d", base, irq));
    disks_.push_back(std::move(*dev));
    ++index;
  }
  return absl::OkStatus();
}

absl::Status MicroVm::CollectDiskWrites(uint32_t disk, DirtyBitmap& out) {
  if (disk >= disk_writes_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("disk ", disk, ": the VM has ", disk_writes_.size(), " file disks"));
  }
  DiskWriteLog& log = *disk_writes_[disk];
  std::lock_guard lock(log.mu);
  if (out.num_pages() != log.blocks.num_pages()) {
    return absl::InvalidArgumentError(absl::StrCat("disk ", disk, ": bitmap has ", out.num_pages(), " blocks, the disk ",
                                                   log.blocks.num_pages()));
  }
  out.Or(log.blocks);
  log.blocks.ClearAll();
  return absl::OkStatus();
}

void MicroVm::QuiesceDisks() {
  for (auto& d : disks_) d->Quiesce();
}

void MicroVm::ResumeDisks() {
  for (auto& d : disks_) d->Resume();
}

// Multiboot's machine state (spec section 3.2), on every vCPU: 32-bit protected mode, flat
// segments, paging off, interrupts off.
absl::Status MicroVm::BootAt(uint32_t entry, uint32_t info_gpa) {
  for (auto& vcpu : vcpus_) {
    ASSIGN_OR_RETURN(kvm_sregs sregs, vcpu->GetSregs());
    sregs.cs = FlatSegment(0x10, 0xb);  // execute/read, accessed
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = FlatSegment(0x18, 0x3);  // read/write, accessed
    sregs.cr0 = 0x11;  // PE | ET
    sregs.cr4 = 0;
    sregs.efer = 0;
    RETURN_IF_ERROR(vcpu->SetSregs(sregs));
    kvm_regs regs{};
    regs.rip = entry;
    regs.rax = FERRY_MULTIBOOT_BOOTLOADER_MAGIC;
    regs.rbx = info_gpa;
    regs.rflags = 0x2;
    RETURN_IF_ERROR(vcpu->SetRegs(regs));
    // Firmware would enable the MTRRs with write-back as default; at reset they are disabled,
    // which makes all of RAM uncacheable (hundreds of times slower where KVM honours it).
    RETURN_IF_ERROR(vcpu->SetMsrs({kvm_msr_entry{kMsrMtrrDefType, 0, kMtrrEnable | kMtrrTypeWriteBack}}));
    // With an in-kernel LAPIC, APs wait for INIT/SIPI; Ferry's guest starts them all at once.
    RETURN_IF_ERROR(vcpu->SetMpState(kvm_mp_state{KVM_MP_STATE_RUNNABLE}));
  }
  return absl::OkStatus();
}

absl::Status MicroVm::SetSlotFlags(uint32_t flags) {
  for (uint32_t slot = 0; slot < ram_.size(); ++slot) {
    const RamRange& r = ram_[slot];
    RETURN_IF_ERROR(vm_->SetUserMemoryRegion(slot, r.gpa, r.bytes, mem_->data() + r.offset, flags));
  }
  return absl::OkStatus();
}

// KVM_GET_DIRTY_LOG alone clears and write-protects a whole slot under KVM's MMU lock: with
// gigabytes of guest every vCPU that faults meanwhile stalls for the whole slot. Manual protection
// (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, Linux 5.2; KVM_DIRTY_LOG_INITIALLY_SET on x86 since 5.7)
// makes GET a copy and re-protects with KVM_CLEAR_DIRTY_LOG a chunk at a time; INITIALLY_SET
// also makes enabling logging protect nothing up front (the first clear does it, in chunks).
// Debian 12's 6.1 offers both (the capability reports 3), as does every kernel Ferry targets;
// the legacy path stays for older kernels and is forced in tests (MicroVmOptions).
absl::Status MicroVm::SetUpDirtyLog() {
  uint64_t chunk = std::max<uint64_t>(options_.dirty_clear_chunk_bytes >> kPageShift, 64);
  clear_chunk_pages_ = std::min<uint64_t>((chunk + 63) / 64 * 64, 1ull << 30);
  int offered = kvm_.CheckExtension(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
  uint64_t flags = static_cast<uint64_t>(std::max(offered, 0)) & options_.dirty_log_protect_flags &
                   (KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET);
  if (!(flags & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)) {
    dirty_log_path_ = DirtyLogPath::kGetClears;
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(vm_->EnableCap(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, flags));
  dirty_log_path_ = (flags & KVM_DIRTY_LOG_INITIALLY_SET) ? DirtyLogPath::kManualProtectInitiallySet
                                                          : DirtyLogPath::kManualProtect;
  return absl::OkStatus();
}

absl::Status MicroVm::HarvestDirtyLog(DirtyBitmap& out, bool reprotect) {
  for (uint32_t slot = 0; slot < ram_.size(); ++slot) {
    std::span<uint64_t> words(log_words_.data(), ((ram_[slot].bytes >> kPageShift) + 63) / 64);
    RETURN_IF_ERROR(vm_->GetDirtyLog(slot, words));
    out.OrWords(ram_[slot].offset >> kPageShift, words);
    if (reprotect && dirty_log_path_ != DirtyLogPath::kGetClears) {
      RETURN_IF_ERROR(ClearDirtyLogInChunks(slot, words));
    }
  }
  return absl::OkStatus();
}

absl::Status MicroVm::ClearDirtyLogInChunks(uint32_t slot, std::span<const uint64_t> words) {
  const uint64_t slot_pages = ram_[slot].bytes >> kPageShift;
  for (uint64_t first = 0; first < slot_pages; first += clear_chunk_pages_) {
    uint64_t n = std::min(clear_chunk_pages_, slot_pages - first);
    std::span<const uint64_t> chunk = words.subspan(first / 64, (n + 63) / 64);
    if (std::all_of(chunk.begin(), chunk.end(), [](uint64_t w) { return w == 0; })) continue;
    RETURN_IF_ERROR(vm_->ClearDirtyLog(slot, first, static_cast<uint32_t>(n), chunk));
  }
  return absl::OkStatus();
}

absl::Status MicroVm::Start() {
  std::lock_guard lock(mu_);
  if (state_ != VmRunState::kCreated) {
    return absl::FailedPreconditionError(absl::StrCat("start: VM is ", VmRunStateName(state_)));
  }
  if (for_restore_ && !restored_) {
    return absl::FailedPreconditionError("start: a VM built for restore needs RestoreState first");
  }
  InstallKickHandler();
  thread_live_.assign(vcpus_.size(), true);
  first_entry_ns_.store(0);
  // A restored VM's disks first take what its driver left in the available rings.
  ResumeDisks();
  for (uint32_t i = 0; i < vcpus_.size(); ++i) threads_.emplace_back([this, i] { VcpuLoop(i); });
  state_ = VmRunState::kRunning;
  StartThrottleThreadLocked();
  return absl::OkStatus();
}

void MicroVm::KickAllLocked() {
  for (size_t i = 0; i < vcpus_.size(); ++i) {
    vcpus_[i]->run()->immediate_exit = 1;
    // A thread that has exited (or was never started) has nothing to interrupt.
    if (i < thread_live_.size() && thread_live_[i]) pthread_kill(threads_[i].native_handle(), KickSignal());
  }
}

void MicroVm::RequestStopLocked() {
  stop_requested_ = true;
  KickAllLocked();
  cv_.notify_all();
}

void MicroVm::VcpuLoop(uint32_t index) {
  KvmVcpu& vcpu = *vcpus_[index];
  for (;;) {
    if (first_entry_ns_.load(std::memory_order_relaxed) == 0) {
      int64_t unset = 0;
      first_entry_ns_.compare_exchange_strong(unset, MonotonicNanos());
    }
    int r = vcpu.Run();
    if (r == -EINTR || (r == 0 && vcpu.run()->exit_reason == KVM_EXIT_INTR)) {
      // A kick. KVM has completed any pending port I/O on this KVM_RUN, so state is consistent.
      std::unique_lock lock(mu_);
      if (!ServeKickLocked(lock)) break;
      // Under mu_: a pause or stop requested from here on kicks again.
      vcpu.run()->immediate_exit = 0;
      continue;
    }
    if (r == -EAGAIN) continue;
    if (r < 0) {
      spdlog::error("vCPU {}: KVM_RUN: {}", index, strerror(-r));
      break;
    }
    if (!HandleExit(vcpu)) break;
  }
  std::lock_guard lock(mu_);
  // One vCPU leaving (guest shutdown, fatal exit) stops the VM: the guest cannot go on without it.
  thread_live_[index] = false;
  if (!stop_requested_) RequestStopLocked();
  if (++exited_ == vcpus_.size()) state_ = VmRunState::kStopped;
  cv_.notify_all();
}

bool MicroVm::ServeKickLocked(std::unique_lock<std::mutex>& lock) {
  bool slept = false;
  for (;;) {
    if (stop_requested_) return false;
    if (pause_requested_) {
      ++parked_;
      cv_.notify_all();
      cv_.wait(lock, [this] { return !pause_requested_ || stop_requested_; });
      --parked_;
      return !stop_requested_;
    }
    if (slept || throttle_percent_ == 0) return true;
    // Auto-converge: this vCPU's share of the slice; a pause, a stop or a new share cuts it short.
    const uint32_t percent = throttle_percent_;
    cv_.wait_for(lock, std::chrono::nanoseconds(kThrottleSliceNs * percent / 100),
                 [this, percent] { return stop_requested_ || pause_requested_ || throttle_percent_ != percent; });
    slept = true;
  }
}

absl::Status MicroVm::SetThrottle(uint32_t percent) {
  if (percent > 99) {
    return absl::InvalidArgumentError(
        absl::StrCat("throttle of ", percent, " %: at most 99 % (the guest must keep running)"));
  }
  std::lock_guard lock(mu_);
  throttle_percent_ = percent;
  StartThrottleThreadLocked();
  cv_.notify_all();  // the kicker and any sleeping vCPU re-read the share
  return absl::OkStatus();
}

void MicroVm::StartThrottleThreadLocked() {
  // Stop joins it; none is started once a stop was requested (or before the vCPUs run).
  if (throttle_percent_ == 0 || throttle_thread_.joinable() || threads_.empty() || stop_requested_) return;
  throttle_thread_ = std::thread([this] { ThrottleLoop(); });
}

// Kicks every vCPU once a slice while throttled and running; idle on the condition variable
// otherwise, so an unthrottled VM pays nothing.
void MicroVm::ThrottleLoop() {
  std::unique_lock lock(mu_);
  auto next = std::chrono::steady_clock::now();
  while (!stop_requested_) {
    if (throttle_percent_ == 0 || pause_requested_) {
      cv_.wait(lock, [this] { return stop_requested_ || (throttle_percent_ > 0 && !pause_requested_); });
      next = std::chrono::steady_clock::now();
      continue;
    }
    next += std::chrono::nanoseconds(kThrottleSliceNs);
    if (cv_.wait_until(lock, next, [this] { return stop_requested_ || throttle_percent_ == 0 || pause_requested_; })) {
      continue;
    }
    // Late on a loaded host: carry on from now rather than kick in a burst.
    next = std::max(next, std::chrono::steady_clock::now());
    KickAllLocked();
  }
}

bool MicroVm::HandleExit(KvmVcpu& vcpu) {
  kvm_run* run = vcpu.run();
  switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      uint8_t* data = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
      for (uint32_t i = 0; i < run->io.count; ++i, data += run->io.size) {
        if (run->io.direction == KVM_EXIT_IO_OUT) {
          bus_.Write(run->io.port, data, run->io.size);
        } else {
          bus_.Read(run->io.port, data, run->io.size);
        }
      }
      return true;
    }
    case KVM_EXIT_MMIO:
      // Unclaimed addresses read all-ones and swallow writes (like an empty bus).
      if (run->mmio.len > sizeof(run->mmio.data)) return true;
      if (run->mmio.is_write) {
        mmio_.Write(run->mmio.phys_addr, run->mmio.data, run->mmio.len);
      } else {
        mmio_.Read(run->mmio.phys_addr, run->mmio.data, run->mmio.len);
      }
      return true;
    case KVM_EXIT_HLT:
      return false;
    case KVM_EXIT_SHUTDOWN:
      spdlog::error("vCPU {}: guest triple fault (KVM_EXIT_SHUTDOWN)", vcpu.id());
      return false;
    case KVM_EXIT_FAIL_ENTRY:
      spdlog::error("vCPU {}: VM entry failed, hardware reason 0x{:x}", vcpu.id(),
                    run->fail_entry.hardware_entry_failure_reason);
      return false;
    case KVM_EXIT_INTERNAL_ERROR:
      spdlog::error("vCPU {}: KVM internal error, suberror {}", vcpu.id(), run->internal.suberror);
      return false;
    default:
      spdlog::error("vCPU {}: unexpected KVM exit reason {}", vcpu.id(), run->exit_reason);
      return false;
  }
}

absl::Status MicroVm::Pause() {
  std::unique_lock lock(mu_);
  if (state_ == VmRunState::kPaused) return absl::OkStatus();
  if (state_ != VmRunState::kRunning) {
    return absl::FailedPreconditionError(absl::StrCat("pause: VM is ", VmRunStateName(state_)));
  }
  pause_requested_ = true;
  KickAllLocked();
  cv_.notify_all();  // vCPUs asleep for the throttle park at once
  bool parked = cv_.wait_for(lock, std::chrono::nanoseconds(kPauseTimeoutNs),
                             [this] { return parked_ + exited_ == vcpus_.size(); });
  if (!parked) {
    // Transactional: never half-paused. The vCPUs that parked go back to the guest; the VM stays
    // running and says so.
    const uint32_t count = parked_;
    pause_requested_ = false;
    cv_.notify_all();
    return absl::DeadlineExceededError(absl::StrCat("pause: only ", count, " of ", vcpus_.size(),
                                                    " vCPUs parked within 5 s; the VM keeps running"));
  }
  // Quiesced: every request a disk took is complete and published, so saved state holds none.
  QuiesceDisks();
  if (state_ == VmRunState::kRunning) state_ = VmRunState::kPaused;
  return absl::OkStatus();
}

absl::Status MicroVm::Resume() {
  std::lock_guard lock(mu_);
  if (state_ == VmRunState::kRunning) return absl::OkStatus();
  if (state_ != VmRunState::kPaused) {
    return absl::FailedPreconditionError(absl::StrCat("resume: VM is ", VmRunStateName(state_)));
  }
  pause_requested_ = false;
  state_ = VmRunState::kRunning;
  first_entry_ns_.store(0);
  ResumeDisks();
  cv_.notify_all();
  return absl::OkStatus();
}

absl::Status MicroVm::Stop() {
  std::lock_guard join_lock(join_mu_);
  {
    std::lock_guard lock(mu_);
    if (threads_.empty()) {
      state_ = VmRunState::kStopped;
      return absl::OkStatus();
    }
    RequestStopLocked();
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  if (throttle_thread_.joinable()) throttle_thread_.join();
  QuiesceDisks();
  std::lock_guard lock(mu_);
  state_ = VmRunState::kStopped;
  return absl::OkStatus();
}

absl::Status MicroVm::EnableDirtyTracking() {
  std::lock_guard lock(dirty_mu_);
  if (tracking_) return absl::OkStatus();
  RETURN_IF_ERROR(SetSlotFlags(KVM_MEM_LOG_DIRTY_PAGES));
  if (dirty_log_path_ == DirtyLogPath::kManualProtectInitiallySet) {
    // The log starts all-set and nothing is write-protected yet: clear (protect) it chunk by chunk,
    // so the first collect reports writes since now, as on the other paths.
    std::fill(log_words_.begin(), log_words_.end(), ~0ull);
    for (uint32_t slot = 0; slot < ram_.size(); ++slot) RETURN_IF_ERROR(ClearDirtyLogInChunks(slot, log_words_));
  }
  tracking_ = true;
  return absl::OkStatus();
}

absl::Status MicroVm::DisableDirtyTracking() {
  std::lock_guard lock(dirty_mu_);
  if (!tracking_) return absl::OkStatus();
  // Harvest first: pages dirtied since the last collect must survive the flag change.
  RETURN_IF_ERROR(HarvestDirtyLog(pending_dirty_, /*reprotect=*/false));
  RETURN_IF_ERROR(SetSlotFlags(0));
  tracking_ = false;
  return absl::OkStatus();
}

absl::Status MicroVm::CollectDirtyPages(DirtyBitmap& out) {
  if (out.num_pages() != mem_->num_pages()) {
    return absl::InvalidArgumentError(absl::StrCat("dirty bitmap has ", out.num_pages(), " pages, guest memory ",
                                                   mem_->num_pages()));
  }
  std::lock_guard lock(dirty_mu_);
  if (tracking_) RETURN_IF_ERROR(HarvestDirtyLog(out, /*reprotect=*/true));
  out.Or(pending_dirty_);
  pending_dirty_.ClearAll();
  return absl::OkStatus();
}

absl::StatusOr<v1::VmState> MicroVm::SaveState() {
  std::lock_guard lock(mu_);
  if (state_ != VmRunState::kPaused) {
    return absl::FailedPreconditionError(
        absl::StrCat("save state: VM is ", VmRunStateName(state_), "; pause it first"));
  }
  v1::VmState s;
  s.set_backend(v1::BACKEND_KIND_KVM);
  s.set_memory_bytes(mem_->size());
  s.set_vcpu_count(static_cast<uint32_t>(vcpus_.size()));
  s.set_guest_cmdline(cmdline_);
  for (size_t i = 0; i < vcpus_.size(); ++i) {
    ASSIGN_OR_RETURN(*s.add_vcpus(), SaveVcpuState(*vcpus_[i], msr_indices_, cpuid_[i]));
  }
  ASSIGN_OR_RETURN(*s.mutable_kvm(), SaveKvmVmState(*vm_));
  *s.mutable_serial() = serial_->Save();
  *s.mutable_status() = monitor_.Save();
  for (const auto& disk : disks_) {
    ASSIGN_OR_RETURN(*s.add_disks(), disk->Save());
  }
  return s;
}

absl::Status MicroVm::RestoreState(const v1::VmState& s) {
  std::lock_guard lock(mu_);
  if (!for_restore_ || state_ != VmRunState::kCreated || restored_) {
    return absl::FailedPreconditionError("restore state: needs a VM built for restore that has not started");
  }
  if (s.backend() != v1::BACKEND_KIND_KVM) {
    return absl::InvalidArgumentError(
        absl::StrCat("restore state: saved by backend ", v1::BackendKind_Name(s.backend()), ", not KVM"));
  }
  if (s.memory_bytes() != mem_->size()) {
    return absl::InvalidArgumentError(absl::StrCat("restore state: saved VM had ", s.memory_bytes(),
                                                   " bytes of memory, this one ", mem_->size()));
  }
  if (s.vcpu_count() != vcpus_.size() || static_cast<size_t>(s.vcpus_size()) != vcpus_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("restore state: saved VM had ", s.vcpu_count(), " vCPUs (",
                                                   s.vcpus_size(), " saved), this one ", vcpus_.size()));
  }
  if (static_cast<size_t>(s.disks_size()) != disks_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("restore state: saved VM had ", s.disks_size(),
                                                   " virtio disks, this one ", disks_.size()));
  }
  // Check everything before touching anything.
  RETURN_IF_ERROR(ValidateKvmVmState(s.kvm()));
  for (int i = 0; i < s.vcpus_size(); ++i) {
    if (s.vcpus(i).index() != static_cast<uint32_t>(i)) {
      return absl::InvalidArgumentError(absl::StrCat("restore state: vCPU entry ", i, " has index ", s.vcpus(i).index()));
    }
    RETURN_IF_ERROR(ValidateVcpuState(s.vcpus(i)));
  }
  // Disks check their own state (the disk's size, rings inside RAM) as they load it: first.
  for (size_t i = 0; i < disks_.size(); ++i) RETURN_IF_ERROR(disks_[i]->Restore(s.disks(static_cast<int>(i))));
  RETURN_IF_ERROR(RestoreKvmVmState(*vm_, s.kvm()));
  for (int i = 0; i < s.vcpus_size(); ++i) {
    RETURN_IF_ERROR(RestoreVcpuState(*vcpus_[i], s.vcpus(i)));
    ASSIGN_OR_RETURN(cpuid_[i], CpuidFromBlob(s.vcpus(i).cpuid(), i));
  }
  serial_->Restore(s.serial());
  monitor_.Restore(s.status());
  if (!s.guest_cmdline().empty()) cmdline_ = s.guest_cmdline();
  restored_ = true;
  return absl::OkStatus();
}

// `existing` (may be null) is guest RAM another process built: a VMM upgrade's new KVM VM maps it
// instead of allocating its own.
absl::StatusOr<std::unique_ptr<MicroVm>> BuildMicroVm(const VmSpec& spec, bool for_restore,
                                                      const MicroVmOptions& options,
                                                      std::unique_ptr<GuestMemory> existing = nullptr,
                                                      std::vector<UniqueFd> handed_disks = {}) {
  RETURN_IF_ERROR(ValidateSpec(spec));
  std::string why;
  if (!KvmUsable(&why)) return absl::FailedPreconditionError(absl::StrCat("KVM is not usable: ", why));
  ASSIGN_OR_RETURN(KvmSystem kvm, KvmSystem::Open());
  std::unique_ptr<GuestMemory> mem = std::move(existing);
  if (!mem) {
    // GuestMemory refuses more than the host has.
    ASSIGN_OR_RETURN(mem, GuestMemory::Create(spec.memory_bytes));
  } else if (mem->size() != spec.memory_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("guest memory of ", mem->size(), " bytes does not match the spec's ",
                                                   spec.memory_bytes));
  }
  auto vm = std::make_unique<MicroVm>(spec, for_restore, options, std::move(kvm), std::move(mem));
  vm->set_handed_disks(std::move(handed_disks));
  RETURN_IF_ERROR(vm->Init());
  return vm;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Vm>> CreateMicroVm(const VmSpec& spec, bool for_restore,
                                                  const MicroVmOptions& options) {
  std::string image = spec.image_path.empty() ? DefaultGuestImagePath() : spec.image_path;
  if (!for_restore) {
    struct stat st {};
    if (::stat(image.c_str(), &st) != 0) return ErrnoError(absl::StrCat("guest image ", image));
  }
  ASSIGN_OR_RETURN(auto vm, BuildMicroVm(spec, for_restore, options));
  if (!for_restore) {
    ASSIGN_OR_RETURN(MultibootEntry entry, LoadMultibootImage(image, vm->cmdline(), vm->memory()));
    RETURN_IF_ERROR(vm->BootAt(entry.entry_eip, entry.info_gpa));
  }
  return std::unique_ptr<Vm>(std::move(vm));
}

absl::StatusOr<std::unique_ptr<Vm>> CreateMicroVmOverMemory(const VmSpec& spec, std::unique_ptr<GuestMemory> memory,
                                                            std::vector<UniqueFd> disk_fds,
                                                            const MicroVmOptions& options) {
  if (!memory) return absl::InvalidArgumentError("a microVM over existing memory needs that memory");
  ASSIGN_OR_RETURN(auto vm, BuildMicroVm(spec, /*for_restore=*/true, options, std::move(memory), std::move(disk_fds)));
  return std::unique_ptr<Vm>(std::move(vm));
}

absl::StatusOr<std::unique_ptr<Vm>> CreateMicroVmWithCode(const VmSpec& spec, uint64_t load_gpa,
                                                          std::span<const uint8_t> code,
                                                          const MicroVmOptions& options) {
  ASSIGN_OR_RETURN(auto vm, BuildMicroVm(spec, /*for_restore=*/false, options));
  // Below 3 GiB a GPA is its memfd offset.
  if (load_gpa + code.size() > std::min<uint64_t>(vm->memory().size(), FERRY_GPA_LOW_RAM_END)) {
    return absl::InvalidArgumentError(absl::StrFormat("code of %d bytes at 0x%x does not fit in guest memory",
                                                      code.size(), load_gpa));
  }
  std::memcpy(vm->memory().data() + load_gpa, code.data(), code.size());
  RETURN_IF_ERROR(vm->BootAt(static_cast<uint32_t>(load_gpa), 0));
  return std::unique_ptr<Vm>(std::move(vm));
}

void MicroVm::StartDiskMirror() {
  for (auto& d : disks_) d->StartMirror();
}

absl::StatusOr<uint64_t> MicroVm::DiskMirrorStep(uint32_t disk, uint64_t release_through,
                                                 std::chrono::milliseconds wait, DirtyBitmap& out) {
  if (disk >= disks_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("disk ", disk, ": the VM has ", disks_.size(), " file disks"));
  }
  disks_[disk]->ReleaseMirrored(release_through);
  absl::Status st;
  // Under the device's lock, so the log holds exactly the writes of the completions this cut holds.
  const uint64_t cut = disks_[disk]->CutMirror(wait, [&] { st = CollectDiskWrites(disk, out); });
  RETURN_IF_ERROR(st);
  return cut;
}

void MicroVm::EndDiskMirror() {
  for (auto& d : disks_) d->EndMirror();
}

absl::Status StartDiskMirror(Vm& vm) {
  auto* micro = dynamic_cast<MicroVm*>(&vm);
  if (!micro) return absl::InvalidArgumentError("disk mirror: not a KVM microVM (only it has disks)");
  micro->StartDiskMirror();
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> DiskMirrorStep(Vm& vm, uint32_t disk, uint64_t release_through,
                                        std::chrono::milliseconds wait, DirtyBitmap& out) {
  auto* micro = dynamic_cast<MicroVm*>(&vm);
  if (!micro) return absl::InvalidArgumentError("disk mirror: not a KVM microVM (only it has disks)");
  return micro->DiskMirrorStep(disk, release_through, wait, out);
}

absl::Status EndDiskMirror(Vm& vm) {
  auto* micro = dynamic_cast<MicroVm*>(&vm);
  if (!micro) return absl::InvalidArgumentError("disk mirror: not a KVM microVM (only it has disks)");
  micro->EndDiskMirror();
  return absl::OkStatus();
}

std::vector<int> DiskDescriptors(Vm& vm) {
  if (auto* micro = dynamic_cast<MicroVm*>(&vm)) return micro->disk_fds();
  return {};
}

absl::Status CollectDiskWrites(Vm& vm, uint32_t disk, DirtyBitmap& out) {
  auto* micro = dynamic_cast<MicroVm*>(&vm);
  if (!micro) return absl::InvalidArgumentError("disk writes: not a KVM microVM (only it has disks)");
  return micro->CollectDiskWrites(disk, out);
}

absl::StatusOr<DirtyLogPath> MicroVmDirtyLogPath(const Vm& vm) {
  const auto* micro = dynamic_cast<const MicroVm*>(&vm);
  if (!micro) return absl::InvalidArgumentError("not a KVM microVM");
  return micro->dirty_log_path();
}

}  // namespace ferry
