#pragma once
// When to stop pre-copy: the switch-over decision (DESIGN.md step 3).

#include <cstdint>
#include <string>

#include "proto/ferry/v1/migration.pb.h"

namespace ferry {

struct ConvergenceOptions {
  double max_downtime_ms = 300;  // QEMU's default
  uint32_t max_rounds = 30;
  double timeout_s = 0;          // 0 = none
  v1::ConvergencePolicy policy = v1::CONVERGENCE_POLICY_CANCEL;
};

ConvergenceOptions ConvergenceOptionsFrom(const v1::MigrationOptions& o);

// Expected downtime = (dirty bytes + device state) / measured bandwidth.
double ExpectedDowntimeMs(uint64_t dirty_bytes, uint64_t state_bytes, double bandwidth_bytes_per_s);

enum class Decision { kContinue, kSwitchOver, kForceSwitchOver, kGiveUp };

struct DecisionWithReason {
  Decision decision;
  std::string reason;  // for the user: why we switch over or give up
};

// After a round: `round` rounds done, `elapsed_s` since pre-copy began, `expected_ms` the downtime
// if we switched over now, `dirty_rate_mibps` and `bandwidth_mibps` as measured in the last round.
DecisionWithReason Decide(const ConvergenceOptions& o, uint32_t round, double elapsed_s, double expected_ms,
                          double dirty_rate_mibps, double bandwidth_mibps);

}  // namespace ferry
