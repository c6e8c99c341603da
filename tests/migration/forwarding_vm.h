#pragma once
// Test seam: a Vm that forwards to a real one, so a test can make one call fail (e.g. the
// destination's Start at commit) without touching the backends.

#include <atomic>
#include <memory>

#include "engine/vm/vm.h"

namespace ferry {

class ForwardingVm : public Vm {
 public:
  explicit ForwardingVm(std::unique_ptr<Vm> inner) : inner_(std::move(inner)) {}
  std::atomic<bool> fail_start{false};

  const VmSpec& spec() const override { return inner_->spec(); }
  GuestMemory& memory() override { return inner_->memory(); }
  VmRunState run_state() const override { return inner_->run_state(); }
  absl::Status Start() override {
    if (fail_start.load()) return absl::InternalError("test fault: the VM cannot start here");
    return inner_->Start();
  }
  absl::Status Pause() override { return inner_->Pause(); }
  absl::Status Resume() override { return inner_->Resume(); }
  absl::Status Stop() override { return inner_->Stop(); }
  absl::Status EnableDirtyTracking() override { return inner_->EnableDirtyTracking(); }
  absl::Status DisableDirtyTracking() override { return inner_->DisableDirtyTracking(); }
  absl::Status CollectDirtyPages(DirtyBitmap& out) override { return inner_->CollectDirtyPages(out); }
  absl::StatusOr<v1::VmState> SaveState() override { return inner_->SaveState(); }
  absl::Status RestoreState(const v1::VmState& state) override { return inner_->RestoreState(state); }
  absl::Status SetThrottle(uint32_t percent) override { return inner_->SetThrottle(percent); }
  uint32_t throttle_percent() const override { return inner_->throttle_percent(); }
  int64_t first_guest_entry_ns() const override { return inner_->first_guest_entry_ns(); }
  GuestHealth health() const override { return inner_->health(); }

 private:
  std::unique_ptr<Vm> inner_;
};

}  // namespace ferry
