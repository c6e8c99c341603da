#pragma once
// The convergence forecast: from a short sample of the guest's dirty rate and the link's
// bandwidth, whether pre-copy will converge by itself, and if not how hard and how long
// auto-converge will slow the guest. A pure function of its inputs, like the rest of the
// precheck (docs/prechecks.md, CONVERGENCE_FORECAST; the controller it models is
// docs/auto_converge.md).

#include <cstdint>
#include <optional>
#include <string>

#include "engine/precheck/finding.h"

namespace ferry {

// Where the link figure comes from; the message says which.
enum class LinkSource {
  kMeasured = 1,      // throughput of earlier migrations to this destination
  kNominal = 2,       // the slower of the two migration interfaces' link speeds
  kBandwidthCap = 3,  // the migration's own --max-bandwidth, below either of the above
};

struct ConvergenceForecastInput {
  double dirty_rate_mib_s = 0;     // distinct pages written per second, as sampled
  double sample_ms = 0;            // how long the sample ran (for the message)
  uint64_t memory_bytes = 0;       // guest RAM: round 1 sends (at most) all of it
  uint64_t working_set_bytes = 0;  // what the guest keeps rewriting; 0 or above memory = all memory
  double link_mib_s = 0;
  LinkSource link_source = LinkSource::kNominal;
  uint32_t link_measurements = 0;  // kMeasured: how many migrations the figure summarises
  uint32_t nominal_mbps = 0;       // kNominal: the slower interface's speed
  std::string destination;         // for the message
  double max_downtime_ms = 300;    // the downtime ceiling of the migration
  // The auto-converge controller (AutoConvergeOptions; the agent passes the engine's own).
  bool auto_converge = true;
  uint32_t throttle_initial_percent = 20;
  uint32_t throttle_step_percent = 10;
  uint32_t throttle_max_percent = 99;
  // A round counts as shrinking when it leaves at most this share of the round before's dirty
  // bytes (1 - kMeaningfulShrink in engine/migration/convergence.h).
  double shrink_ratio = 0.75;
};

// A CONVERGENCE_FORECAST warning, or nothing when pre-copy converges unaided: the guest dirties
// at most shrink_ratio of the link, or its whole working set crosses the link within the downtime
// ceiling. Nothing either when a figure is missing (zero).
std::optional<Finding> ForecastConvergence(const ConvergenceForecastInput& in);

}  // namespace ferry
