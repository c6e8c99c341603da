#include "engine/migration/convergence.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace ferry {
namespace {

double MiB(uint64_t bytes) { return static_cast<double>(bytes) / 1048576.0; }

// "down 40 % from 12.0 MiB", "up from 12.0 MiB", "no smaller than the 12.0 MiB before".
std::string ChangeFrom(uint64_t before, uint64_t after) {
  if (after < before) {
    double cut = 100.0 * static_cast<double>(before - after) / static_cast<double>(before);
    return absl::StrFormat("down %.0f %% from %.1f MiB", cut, MiB(before));
  }
  if (after > before) return absl::StrFormat("up from %.1f MiB", MiB(before));
  return absl::StrFormat("no smaller than the %.1f MiB before", MiB(before));
}

}  // namespace

ConvergenceOptions ConvergenceOptionsFrom(const v1::MigrationOptions& o) {
  ConvergenceOptions c;
  if (o.max_downtime_ms() > 0) c.max_downtime_ms = o.max_downtime_ms();
  if (o.max_rounds() > 0) c.max_rounds = o.max_rounds();
  c.timeout_s = o.timeout_s();
  if (o.policy() != v1::CONVERGENCE_POLICY_UNSPECIFIED) c.policy = o.policy();
  return c;
}

double ExpectedDowntimeMs(uint64_t dirty_bytes, uint64_t state_bytes, double bandwidth_bytes_per_s) {
  if (bandwidth_bytes_per_s <= 0) return 1e12;
  return static_cast<double>(dirty_bytes + state_bytes) / bandwidth_bytes_per_s * 1000.0;
}

DecisionWithReason Decide(const ConvergenceOptions& o, uint32_t round, double elapsed_s, double expected_ms,
                          double dirty_rate_mibps, double bandwidth_mibps) {
  if (expected_ms <= o.max_downtime_ms) {
    return {Decision::kSwitchOver, absl::StrFormat("expected downtime %.1f ms fits the %.0f ms target",
                                                   expected_ms, o.max_downtime_ms)};
  }
  bool out_of_rounds = round >= o.max_rounds;
  bool out_of_time = o.timeout_s > 0 && elapsed_s >= o.timeout_s;
  if (!out_of_rounds && !out_of_time) return {Decision::kContinue, ""};
  std::string why = absl::StrFormat(
      "did not converge after %u rounds / %.1f s: expected downtime %.0f ms exceeds the %.0f ms target "
      "(guest dirties %.1f MiB/s, link moves %.1f MiB/s)",
      round, elapsed_s, expected_ms, o.max_downtime_ms, dirty_rate_mibps, bandwidth_mibps);
  if (o.policy == v1::CONVERGENCE_POLICY_FORCE_SWITCHOVER) {
    return {Decision::kForceSwitchOver, why + "; forcing switch-over as the policy asks"};
  }
  return {Decision::kGiveUp, why + "; cancelled as the policy asks, the VM keeps running on the source"};
}

bool ShrankMeaningfully(uint64_t before_bytes, uint64_t after_bytes) {
  return after_bytes < before_bytes &&
         static_cast<double>(after_bytes) <= static_cast<double>(before_bytes) * (1.0 - kMeaningfulShrink);
}

SwitchoverPlanner::SwitchoverPlanner(const ConvergenceOptions& o) : options_(o) {}

DecisionWithReason SwitchoverPlanner::AfterRound(const RoundOutcome& r) {
  const bool had_previous = have_previous_;
  const uint64_t previous = previous_dirty_bytes_;
  have_previous_ = true;
  previous_dirty_bytes_ = r.dirty_bytes;

  const double ceiling = options_.max_downtime_ms;
  const double good_enough = std::min(options_.good_enough_ms, ceiling);
  if (r.expected_ms <= good_enough) {
    return {Decision::kSwitchOver,
            absl::StrFormat("expected pause %.1f ms is under %.0f ms (%.1f MiB dirty after round %u): switching "
                            "over now, more rounds cannot make it noticeably shorter",
                            r.expected_ms, good_enough, MiB(r.dirty_bytes), r.round)};
  }
  if (r.expected_ms > ceiling) {
    // Decide continues below the limits and forces or gives up at them, with the figures.
    DecisionWithReason d =
        Decide(options_, r.round, r.elapsed_s, r.expected_ms, r.dirty_rate_mibps, r.bandwidth_mibps);
    if (d.decision == Decision::kContinue) {
      d.reason = absl::StrFormat(
          "round %u left %.1f MiB dirty: expected pause %.0f ms is above the %.0f ms target (guest dirties "
          "%.1f MiB/s, link moves %.1f MiB/s%s), another round",
          r.round, MiB(r.dirty_bytes), r.expected_ms, ceiling, r.dirty_rate_mibps, r.bandwidth_mibps,
          r.throttle_percent > 0 ? absl::StrFormat(", guest throttled %u %%", r.throttle_percent) : "");
    }
    return d;
  }
  // Within the ceiling: iterate only while rounds still buy a shorter pause.
  const bool out_of_rounds = r.round >= options_.max_rounds;
  const bool out_of_time = options_.timeout_s > 0 && r.elapsed_s >= options_.timeout_s;
  if (!had_previous || ShrankMeaningfully(previous, r.dirty_bytes)) {
    std::string change = had_previous ? ChangeFrom(previous, r.dirty_bytes) : "after the full copy";
    if (out_of_rounds || out_of_time) {
      return {Decision::kSwitchOver,
              absl::StrFormat("expected pause %.1f ms fits the %.0f ms target; switching over at the %s limit "
                              "(%u rounds, %.1f s) with %.1f MiB dirty",
                              r.expected_ms, ceiling, out_of_rounds ? "round" : "time", r.round, r.elapsed_s,
                              MiB(r.dirty_bytes))};
    }
    return {Decision::kContinue,
            absl::StrFormat("round %u left %.1f MiB dirty (%s): expected pause %.1f ms fits the %.0f ms target; "
                            "iterating while the dirty set still shrinks",
                            r.round, MiB(r.dirty_bytes), change, r.expected_ms, ceiling)};
  }
  return {Decision::kSwitchOver,
          absl::StrFormat("round %u left %.1f MiB dirty (%s): the dirty set stopped shrinking, so expected pause "
                          "%.1f ms is about the smallest pre-copy reaches; it fits the %.0f ms target",
                          r.round, MiB(r.dirty_bytes), ChangeFrom(previous, r.dirty_bytes), r.expected_ms, ceiling)};
}

}  // namespace ferry
