#pragma once
// The run-time side of a FaultPolicy: every file-system operation passes Admit() before it touches
// the backing directory. In apd, Admit() blocks until the policy changes (then it proceeds, fails or
// keeps waiting as the new policy says), so nothing is lost when an APD clears.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "tests/faultfs/fault_policy.h"

namespace ferry::faultfs {

struct GateCounters {
  int64_t blocked_now = 0;   // operations waiting in apd right now
  int64_t failed_total = 0;  // operations failed by a fault since start
  int64_t delayed_total = 0;
};

class FaultGate {
 public:
  // Asked about every 100 ms while an operation is blocked: true lets it go now. `abandon` is for a
  // caller that is being killed (the operation then fails with EINTR); `shutting_down` releases it
  // to proceed, so stopping the file system never loses a blocked write.
  struct WaitHooks {
    std::function<bool()> abandon;
    std::function<bool()> shutting_down;
  };

  // 0 when the operation may go ahead, else a negative errno to return for it.
  int Admit(FsOp op, const char* path, const WaitHooks& hooks);

  void SetPolicy(FaultPolicy policy);
  FaultPolicy policy() const;
  GateCounters counters() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable changed_;
  FaultPolicy policy_ ABSL_GUARDED_BY(mu_);
  GateCounters counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ferry::faultfs
