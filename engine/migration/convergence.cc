#include "engine/migration/convergence.h"

#include "absl/strings/str_format.h"

namespace ferry {

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

}  // namespace ferry
