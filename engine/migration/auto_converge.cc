#include "engine/migration/auto_converge.h"

#include <algorithm>

namespace ferry {

AutoConvergeOptions AutoConvergeOptionsFrom(const v1::MigrationOptions& o) {
  AutoConvergeOptions a;
  a.enabled = !o.no_auto_converge();
  a.max_downtime_ms = ConvergenceOptionsFrom(o).max_downtime_ms;
  return a;
}

AutoConverge::AutoConverge(AutoConvergeOptions o) : options_(o) {
  options_.max_percent = std::min<uint32_t>(options_.max_percent, 99);
  options_.initial_percent = std::min(options_.initial_percent, options_.max_percent);
}

uint32_t AutoConverge::AfterRound(const RoundOutcome& r) {
  const bool had_previous = have_previous_;
  const uint64_t previous = previous_dirty_bytes_;
  have_previous_ = true;
  previous_dirty_bytes_ = r.dirty_bytes;
  if (!options_.enabled) return percent_;

  const bool shrank = had_previous ? ShrankMeaningfully(previous, r.dirty_bytes)
                                   : r.dirty_rate_mibps < r.bandwidth_mibps;
  const bool above_ceiling = r.expected_ms > options_.max_downtime_ms;
  if (shrank) {
    // Ease off only once the pause fits: easing while still above the ceiling lets the guest
    // outrun the link again (the throttle would oscillate round after round).
    if (!above_ceiling) percent_ = percent_ > options_.step_percent ? percent_ - options_.step_percent : 0;
  } else if (above_ceiling) {
    percent_ = percent_ == 0 ? options_.initial_percent
                             : std::min(percent_ + options_.step_percent, options_.max_percent);
  }
  max_percent_used_ = std::max(max_percent_used_, percent_);
  return percent_;
}

}  // namespace ferry
