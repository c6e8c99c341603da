#include "tests/faultfs/fault_gate.h"

#include <cerrno>
#include <chrono>
#include <thread>

namespace ferry::faultfs {

int FaultGate::Admit(FsOp op, const char* path, const WaitHooks& hooks) {
  std::unique_lock lock(mu_);
  bool counted_blocked = false;
  auto stop_counting = [&] {
    if (counted_blocked) --counters_.blocked_now;
    counted_blocked = false;
  };
  for (;;) {
    FaultAction action = Decide(policy_, op, path ? path : "/");
    switch (action.verdict) {
      case Verdict::kProceed:
        stop_counting();
        return 0;
      case Verdict::kFail:
        stop_counting();
        ++counters_.failed_total;
        return -action.error;
      case Verdict::kDelay: {
        stop_counting();
        ++counters_.delayed_total;
        lock.unlock();
        std::this_thread::sleep_for(std::chrono::milliseconds(action.delay_ms));
        return 0;
      }
      case Verdict::kBlock:
        if (!counted_blocked) {
          ++counters_.blocked_now;
          counted_blocked = true;
        }
        changed_.wait_for(lock, std::chrono::milliseconds(100));
        if (hooks.shutting_down && hooks.shutting_down()) {
          stop_counting();
          return 0;
        }
        if (hooks.abandon && hooks.abandon()) {
          stop_counting();
          return -EINTR;
        }
        break;
    }
  }
}

void FaultGate::SetPolicy(FaultPolicy policy) {
  {
    std::lock_guard lock(mu_);
    policy_ = std::move(policy);
  }
  changed_.notify_all();
}

FaultPolicy FaultGate::policy() const {
  std::lock_guard lock(mu_);
  return policy_;
}

GateCounters FaultGate::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

}  // namespace ferry::faultfs
