// The synthetic backend: one host thread per vCPU runs the built-in guest's workload core
// (engine/guest/workload.c) over guest memory, whose whole state lives in that memory. What is
// not in memory — the guest clock, the console's partial line, the monitor's counters — is the
// saved state. Dirty pages come from the kernel (PageWriteTracker).
#include "engine/vm/synthetic_vm.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/clock.h"
#include "engine/base/status.h"
#include "engine/guest/workload.h"
#include "engine/vm/guest_monitor.h"
#include "engine/vm/page_write_tracker.h"

namespace ferry {
namespace {

constexpr uint64_t kTicksPerMs = 1'000'000;  // the synthetic guest clock counts nanoseconds
constexpr int64_t kMaxSleepNs = 1'000'000;
// Auto-converge: each worker sleeps its throttle's share of every slice (as MicroVm's vCPUs do).
constexpr int64_t kThrottleSliceNs = 10'000'000;

std::string SyntheticCmdline(const VmSpec& spec) {
  return absl::StrCat(GuestCommandLine(spec.workload), " ncpu=", spec.vcpus);
}

class SyntheticVm final : public Vm {
 public:
  SyntheticVm(const VmSpec& spec, std::unique_ptr<GuestMemory> mem,
              std::unique_ptr<PageWriteTracker> tracker, bool for_restore, UniqueFd log)
      : spec_(spec), mem_(std::move(mem)), tracker_(std::move(tracker)), for_restore_(for_restore),
        log_(std::move(log)), cmdline_(SyntheticCmdline(spec)) {}
  ~SyntheticVm() override { (void)Stop(); }

  const VmSpec& spec() const override { return spec_; }
  GuestMemory& memory() override { return *mem_; }
  VmRunState run_state() const override {
    std::lock_guard lock(mu_);
    return state_;
  }

  absl::Status Start() override {
    std::lock_guard lock(mu_);
    if (state_ != VmRunState::kCreated) {
      return absl::FailedPreconditionError(absl::StrCat("cannot start a VM that is ", VmRunStateName(state_)));
    }
    void* ws = Workset();
    if (!for_restore_) {
      fw_config cfg;
      fw_config_defaults(&cfg);
      char err[160];
      if (fw_parse_cmdline(cmdline_.c_str(), &cfg, err, sizeof(err)) != 0) {
        return absl::InvalidArgumentError(absl::StrCat("guest command line: ", err));
      }
      fw_init(ws, &cfg, kTicksPerMs, 0);
      guest_base_ns_ = 0;
    } else {
      if (!restored_) return absl::FailedPreconditionError("RestoreState must come before Start on a VM built for restore");
      if (!fw_valid(ws)) {
        return absl::FailedPreconditionError(
            "guest memory holds no workload state (was guest memory copied in before Start?)");
      }
      // The workload runs in this process and follows offsets stored in guest memory: memory
      // that came from elsewhere is checked whole before a worker runs over it.
      if (const char* why = fw_check(ws, mem_->size() - FERRY_GPA_WORKSET)) {
        return absl::FailedPreconditionError(absl::StrCat("guest memory's workload state is not valid (", why,
                                                          "); the VM was not started"));
      }
      if (static_cast<const fw_state*>(ws)->nworkers != spec_.vcpus) {
        return absl::FailedPreconditionError(absl::StrCat("guest memory's workload has ",
                                                          static_cast<const fw_state*>(ws)->nworkers,
                                                          " workers; this VM has ", spec_.vcpus, " vCPUs"));
      }
    }
    host_base_ns_ = MonotonicNanos();
    first_entry_ns_.store(0);
    for (uint32_t i = 0; i < spec_.vcpus; ++i) threads_.emplace_back([this, i] { Run(i); });
    state_ = VmRunState::kRunning;
    return absl::OkStatus();
  }

  absl::Status Pause() override {
    std::unique_lock lock(mu_);
    if (state_ == VmRunState::kPaused) return absl::OkStatus();
    if (state_ != VmRunState::kRunning) {
      return absl::FailedPreconditionError(absl::StrCat("cannot pause a VM that is ", VmRunStateName(state_)));
    }
    pause_ = true;
    cv_.notify_all();
    if (!cv_.wait_for(lock, std::chrono::seconds(5), [&] { return parked_ == threads_.size(); })) {
      // Transactional: never half-paused. The parked workers run on; the VM stays running.
      const size_t parked = parked_;
      pause_ = false;
      cv_.notify_all();
      return absl::DeadlineExceededError(absl::StrCat("pause: only ", parked, " of ", threads_.size(),
                                                      " workload threads stopped within 5 s; the VM keeps running"));
    }
    state_ = VmRunState::kPaused;
    return absl::OkStatus();
  }

  absl::Status Resume() override {
    std::lock_guard lock(mu_);
    if (state_ == VmRunState::kRunning) return absl::OkStatus();
    if (state_ != VmRunState::kPaused) {
      return absl::FailedPreconditionError(absl::StrCat("cannot resume a VM that is ", VmRunStateName(state_)));
    }
    pause_ = false;
    first_entry_ns_.store(0);
    cv_.notify_all();
    state_ = VmRunState::kRunning;
    return absl::OkStatus();
  }

  absl::Status Stop() override {
    {
      std::lock_guard lock(mu_);
      if (state_ == VmRunState::kStopped) return absl::OkStatus();
      stop_ = true;
      cv_.notify_all();
    }
    for (std::thread& t : threads_) t.join();
    std::lock_guard lock(mu_);
    threads_.clear();
    state_ = VmRunState::kStopped;
    return absl::OkStatus();
  }

  absl::Status EnableDirtyTracking() override { return tracker_->Start(); }
  absl::Status DisableDirtyTracking() override { return tracker_->Stop(); }
  absl::Status CollectDirtyPages(DirtyBitmap& out) override {
    if (out.num_pages() != mem_->num_pages()) {
      return absl::InvalidArgumentError(absl::StrCat("dirty bitmap has ", out.num_pages(), " pages; guest memory has ",
                                                     mem_->num_pages()));
    }
    return tracker_->Collect(out);
  }

  absl::StatusOr<v1::VmState> SaveState() override {
    std::lock_guard lock(mu_);
    if (state_ != VmRunState::kPaused) {
      return absl::FailedPreconditionError(absl::StrCat("SaveState needs a paused VM; this one is ", VmRunStateName(state_)));
    }
    v1::VmState s;
    s.set_backend(v1::BACKEND_KIND_SYNTHETIC);
    s.set_memory_bytes(mem_->size());
    s.set_vcpu_count(spec_.vcpus);
    s.set_guest_cmdline(cmdline_);
    *s.mutable_status() = monitor_.Save();
    s.mutable_synthetic()->set_workers(spec_.vcpus);
    uint64_t clock = GuestNow();
    s.mutable_synthetic()->set_extra(std::string(reinterpret_cast<const char*>(&clock), sizeof(clock)));
    std::lock_guard console_lock(console_mu_);
    s.mutable_serial()->set_partial_line(partial_);
    return s;
  }

  absl::Status RestoreState(const v1::VmState& s) override {
    std::lock_guard lock(mu_);
    if (!for_restore_ || state_ != VmRunState::kCreated) {
      return absl::FailedPreconditionError("RestoreState needs a VM built for restore that has not started");
    }
    if (s.backend() != v1::BACKEND_KIND_SYNTHETIC) {
      return absl::InvalidArgumentError(absl::StrCat("saved state is from backend ", v1::BackendKind_Name(s.backend()),
                                                     ", not the synthetic backend"));
    }
    if (s.memory_bytes() != mem_->size() || s.vcpu_count() != spec_.vcpus) {
      return absl::InvalidArgumentError(absl::StrCat("saved state is for ", s.memory_bytes(), " bytes and ",
                                                     s.vcpu_count(), " vCPUs; this VM has ", mem_->size(),
                                                     " bytes and ", spec_.vcpus));
    }
    if (s.synthetic().extra().size() != sizeof(uint64_t)) {
      return absl::InvalidArgumentError("saved synthetic state lacks the guest clock (8 bytes in extra)");
    }
    std::memcpy(&guest_base_ns_, s.synthetic().extra().data(), sizeof(uint64_t));
    monitor_.Restore(s.status());
    {
      std::lock_guard console_lock(console_mu_);
      partial_ = s.serial().partial_line();
      at_line_start_ = partial_.empty();
    }
    restored_ = true;
    return absl::OkStatus();
  }

  absl::Status SetThrottle(uint32_t percent) override {
    if (percent > 99) {
      return absl::InvalidArgumentError(absl::StrCat("throttle of ", percent,
                                                     " %: at most 99 % (the guest must keep running)"));
    }
    std::lock_guard lock(mu_);
    throttle_.store(percent);
    cv_.notify_all();  // a worker asleep on the old share re-reads it
    return absl::OkStatus();
  }
  uint32_t throttle_percent() const override { return throttle_.load(); }
  int64_t first_guest_entry_ns() const override { return first_entry_ns_.load(); }

  GuestHealth health() const override { return monitor_.health(); }

 private:
  void* Workset() { return mem_->data() + FERRY_GPA_WORKSET; }
  // Guest time continues from its saved value on a restored VM, as a restored TSC does.
  uint64_t GuestNow() const { return guest_base_ns_ + static_cast<uint64_t>(MonotonicNanos() - host_base_ns_); }

  void Run(uint32_t idx) {
    const fw_env env{this, &SyntheticVm::ConsoleThunk, &SyntheticVm::StatusThunk};
    void* ws = Workset();
    int64_t slice_start = 0;
    for (;;) {
      if (pause_.load(std::memory_order_acquire) || stop_.load(std::memory_order_acquire)) {
        std::unique_lock lock(mu_);
        ++parked_;
        cv_.notify_all();
        cv_.wait(lock, [&] { return !pause_ || stop_; });
        --parked_;
        if (stop_) return;
        slice_start = 0;  // a pause is not run time
      }
      if (first_entry_ns_.load(std::memory_order_relaxed) == 0) {
        int64_t unset = 0;
        first_entry_ns_.compare_exchange_strong(unset, MonotonicNanos());
      }
      uint64_t wait = 0;
      if (tracker_->writers_need_gate()) {
        absl::ReaderMutexLock writing(&PageWriteTracker::WriterGate());
        wait = fw_step(ws, idx, GuestNow(), &env);
      } else {
        wait = fw_step(ws, idx, GuestNow(), &env);
      }
      Throttle(slice_start);
      if (wait != 0) {
        std::unique_lock lock(mu_);
        int64_t ns = std::min<int64_t>(static_cast<int64_t>(std::min<uint64_t>(wait, kMaxSleepNs)), kMaxSleepNs);
        cv_.wait_for(lock, std::chrono::nanoseconds(ns), [&] { return pause_ || stop_; });
      }
    }
  }

  // Once this worker has run its share of the slice, sleeps the rest (a pause, a stop or a new
  // share cuts the sleep short). `slice_start` is 0 while unthrottled.
  void Throttle(int64_t& slice_start) {
    uint32_t percent = throttle_.load(std::memory_order_relaxed);
    if (percent == 0) {
      slice_start = 0;
      return;
    }
    int64_t now = MonotonicNanos();
    if (slice_start == 0) slice_start = now;
    if (now - slice_start < kThrottleSliceNs * (100 - percent) / 100) return;
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::nanoseconds(kThrottleSliceNs * percent / 100),
                 [&] { return pause_ || stop_ || throttle_ != percent; });
    slice_start = MonotonicNanos();
  }

  static void ConsoleThunk(void* ctx, const char* text, int is_line) {
    static_cast<SyntheticVm*>(ctx)->Console(text, is_line != 0);
  }
  static void StatusThunk(void* ctx, uint32_t port, uint32_t value) {
    static_cast<SyntheticVm*>(ctx)->Status(port, value);
  }

  void Console(const char* text, bool is_line) {
    std::lock_guard lock(console_mu_);
    std::string out;
    if (is_line && !at_line_start_) out += '\n';
    out += text;
    if (is_line) out += '\n';
    if (out.empty()) return;
    at_line_start_ = out.back() == '\n';
    if (log_.valid()) (void)!write(log_.get(), out.data(), out.size());
    if (spec_.console_to_stdout) {
      fwrite(out.data(), 1, out.size(), stdout);
      fflush(stdout);
    }
    for (char c : out) {
      if (c != '\n') {
        partial_ += c;
        continue;
      }
      monitor_.OnConsoleLine(partial_);
      partial_.clear();
    }
  }

  void Status(uint32_t port, uint32_t value) {
    switch (port) {
      case FERRY_STATUS_HEARTBEAT: monitor_.OnHeartbeat(value); break;
      case FERRY_STATUS_CORRUPTION: monitor_.OnCorruption(value); break;
      case FERRY_STATUS_BOOTED: monitor_.OnBooted(value); break;
      case FERRY_STATUS_SHUTDOWN: monitor_.OnShutdown(static_cast<int32_t>(value)); break;
      case FERRY_STATUS_SWEEP: monitor_.OnSweep(value); break;
      default: break;  // ROUND: progress only
    }
  }

  const VmSpec spec_;
  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<PageWriteTracker> tracker_;
  const bool for_restore_;
  UniqueFd log_;
  const std::string cmdline_;
  GuestMonitor monitor_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  VmRunState state_ = VmRunState::kCreated;
  std::atomic<bool> pause_{false}, stop_{false};  // written under mu_, read lock-free by workers
  std::atomic<uint32_t> throttle_{0};              // likewise
  std::atomic<int64_t> first_entry_ns_{0};
  size_t parked_ = 0;
  bool restored_ = false;
  std::vector<std::thread> threads_;
  uint64_t guest_base_ns_ = 0;  // fixed before the workers start
  int64_t host_base_ns_ = 0;

  std::mutex console_mu_;
  bool at_line_start_ = true;
  std::string partial_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Vm>> CreateSyntheticVm(const VmSpec& spec, bool for_restore,
                                                      std::unique_ptr<GuestMemory> memory) {
  if (spec.vcpus < 1 || spec.vcpus > FERRY_MAX_VCPUS) {
    return absl::InvalidArgumentError(absl::StrCat("vcpus must be 1..", FERRY_MAX_VCPUS, ", got ", spec.vcpus));
  }
  if (spec.memory_bytes < FERRY_GUEST_MIN_MEMORY) {
    return absl::InvalidArgumentError(absl::StrCat("memory of ", spec.memory_bytes >> 20, " MiB is below the ",
                                                   FERRY_GUEST_MIN_MEMORY >> 20, " MiB minimum"));
  }
  fw_config cfg;
  fw_config_defaults(&cfg);
  char err[160];
  std::string cmdline = SyntheticCmdline(spec);
  if (fw_parse_cmdline(cmdline.c_str(), &cfg, err, sizeof(err)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("workload: ", err));
  }
  uint64_t needed = FERRY_GPA_WORKSET + fw_region_bytes(&cfg);
  if (needed > spec.memory_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("working set of ", cfg.ws_pages >> 8, " MiB needs ",
                                                   (needed + (1 << 20) - 1) >> 20, " MiB of guest memory; the VM has ",
                                                   spec.memory_bytes >> 20, " MiB"));
  }
  std::unique_ptr<GuestMemory> mem = std::move(memory);
  if (!mem) {
    ASSIGN_OR_RETURN(mem, GuestMemory::Create(spec.memory_bytes));
  } else if (mem->size() != spec.memory_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("guest memory of ", mem->size(), " bytes does not match the spec's ",
                                                   spec.memory_bytes));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<PageWriteTracker> tracker, PageWriteTracker::Create(mem->data(), mem->size()));
  UniqueFd log;
  if (!spec.console_log_path.empty()) {
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (for_restore ? O_APPEND : O_TRUNC);
    log.Reset(open(spec.console_log_path.c_str(), flags, 0644));
    if (!log.valid()) return ErrnoError(absl::StrCat("open console log ", spec.console_log_path));
  }
  return std::unique_ptr<Vm>(new SyntheticVm(spec, std::move(mem), std::move(tracker), for_restore, std::move(log)));
}

}  // namespace ferry
