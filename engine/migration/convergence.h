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
  // A pause this short cannot be improved on in a way anyone notices: switch over at once.
  double good_enough_ms = 5;
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

// What one pre-copy round ended with: `round` rounds done, `elapsed_s` since pre-copy began,
// `dirty_bytes` left dirty, `expected_ms` the pause if we switched over now, the rates measured in
// the round, and the throttle the guest ran under during it.
struct RoundOutcome {
  uint32_t round = 0;
  double elapsed_s = 0;
  uint64_t dirty_bytes = 0;
  double expected_ms = 0;
  double dirty_rate_mibps = 0;
  double bandwidth_mibps = 0;
  uint32_t throttle_percent = 0;
};

// A round shrinks the dirty set meaningfully when it leaves at most 3/4 of what the round before
// left: less than that is noise, and another round would not buy a shorter pause.
inline constexpr double kMeaningfulShrink = 0.25;
bool ShrankMeaningfully(uint64_t before_bytes, uint64_t after_bytes);

// Switch-over for the smallest pause. The downtime target is a ceiling, not the aim: pre-copy
// goes on while rounds still shrink the dirty set and switches over at the round where they stop
// (the expected minimum), or at once when the pause is under good_enough_ms. Above the ceiling it
// goes on (auto-converge works meanwhile) until the round or time limit, then forces or gives up
// per policy exactly as Decide does.
class SwitchoverPlanner {
 public:
  explicit SwitchoverPlanner(const ConvergenceOptions& o);
  DecisionWithReason AfterRound(const RoundOutcome& r);
  void set_max_downtime_ms(double ms) { options_.max_downtime_ms = ms; }  // changed live (SetMigration)

 private:
  ConvergenceOptions options_;
  bool have_previous_ = false;
  uint64_t previous_dirty_bytes_ = 0;
};

}  // namespace ferry
