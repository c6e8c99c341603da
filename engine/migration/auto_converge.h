#pragma once
// Auto-converge: how much to slow the guest so pre-copy converges (vMotion's stun-during-page-
// send). A pure controller: it sees round outcomes and says which throttle the next round runs
// under; the engine applies it with Vm::SetThrottle and always resets it to 0 at the end.

#include <cstdint>

#include "engine/migration/convergence.h"
#include "proto/ferry/v1/migration.pb.h"

namespace ferry {

struct AutoConvergeOptions {
  bool enabled = true;
  uint32_t initial_percent = 20;
  uint32_t step_percent = 10;
  uint32_t max_percent = 99;  // Vm::SetThrottle refuses more
  // The downtime ceiling (ConvergenceOptions::max_downtime_ms): a guest whose expected pause fits
  // it is never slowed.
  double max_downtime_ms = 300;
};

// enabled unless no_auto_converge; the ceiling from max_downtime_ms as ConvergenceOptionsFrom reads it.
AutoConvergeOptions AutoConvergeOptionsFrom(const v1::MigrationOptions& o);

// Starts throttling only when the guest outruns the link: the round left the expected pause above
// the ceiling and did not shrink the dirty set meaningfully (round 1, with nothing to compare,
// counts as not shrinking when the guest dirtied faster than the link moved). Then the throttle
// grows by step_percent each round that does not shrink, drops back by step_percent each round
// that does once the expected pause fits the ceiling, and holds otherwise.
class AutoConverge {
 public:
  explicit AutoConverge(AutoConvergeOptions o);
  // After each pre-copy round; returns the throttle percent to apply for the next round.
  uint32_t AfterRound(const RoundOutcome& r);
  uint32_t percent() const { return percent_; }
  uint32_t max_percent_used() const { return max_percent_used_; }

 private:
  AutoConvergeOptions options_;
  uint32_t percent_ = 0;
  uint32_t max_percent_used_ = 0;
  bool have_previous_ = false;
  uint64_t previous_dirty_bytes_ = 0;
};

}  // namespace ferry
