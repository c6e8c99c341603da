#include "engine/precheck/convergence_forecast.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ferry {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

std::string Duration(double s) {
  if (s < 1) return absl::StrFormat("%.0f ms", s * 1000);
  return s < 10 ? absl::StrFormat("%.1f s", s) : absl::StrFormat("%.0f s", s);
}

std::string LinkPhrase(const ConvergenceForecastInput& in) {
  const std::string to = in.destination.empty() ? "" : absl::StrCat(" to ", in.destination);
  switch (in.link_source) {
    case LinkSource::kMeasured:
      return absl::StrFormat("the link%s carried %.0f MiB/s (measured by %u earlier migration%s there)", to,
                             in.link_mib_s, in.link_measurements, in.link_measurements == 1 ? "" : "s");
    case LinkSource::kNominal:
      return absl::StrFormat(
          "the link%s is nominally %.0f MiB/s (the slower migration interface's %u Mbit/s; no migration "
          "there has been measured yet)",
          to, in.link_mib_s, in.nominal_mbps);
    case LinkSource::kBandwidthCap:
      return absl::StrFormat("--max-bandwidth caps the copy at %.0f MiB/s", in.link_mib_s);
  }
  return "";
}

}  // namespace

std::optional<Finding> ForecastConvergence(const ConvergenceForecastInput& in) {
  const double dirty = in.dirty_rate_mib_s;
  const double link = in.link_mib_s;
  if (dirty <= 0 || link <= 0 || in.memory_bytes == 0 || in.shrink_ratio <= 0 || in.shrink_ratio >= 1) {
    return std::nullopt;
  }
  const double memory_mib = static_cast<double>(in.memory_bytes) / kMiB;
  const double ws_mib = in.working_set_bytes == 0 || in.working_set_bytes > in.memory_bytes
                            ? memory_mib
                            : static_cast<double>(in.working_set_bytes) / kMiB;
  // Each round then leaves at most shrink_ratio of the last: converges unaided.
  if (dirty <= in.shrink_ratio * link) return std::nullopt;
  // The pause is at most the working set over the link: it fits, so nothing is throttled.
  const double ws_pause_ms = ws_mib * 1000 / link;
  if (ws_pause_ms <= in.max_downtime_ms) return std::nullopt;
  const double ws_pause_s = ws_pause_ms / 1000;

  const double round1_s = memory_mib / link;
  // A later round resends what the guest rewrote during the one before: soon the working set.
  const double round_s = std::min(ws_mib, dirty * round1_s) / link;
  // The throttle at which the guest dirties shrink_ratio of the link, so the rounds shrink.
  const double needed_percent = 100 * (1 - in.shrink_ratio * link / dirty);
  const double unaided_link = dirty / in.shrink_ratio;

  std::string head = absl::StrFormat("this VM dirties %.0f MiB/s", dirty);
  if (in.sample_ms > 0) absl::StrAppendFormat(&head, " (sampled over %.0f ms)", in.sample_ms);
  absl::StrAppend(&head, " and ", LinkPhrase(in), ": pre-copy cannot converge on its own (round 1 alone takes ~",
                  Duration(round1_s), " for ", absl::StrFormat("%.0f", memory_mib), " MiB). ");
  const std::string max_downtime = absl::StrFormat(
      "--max-downtime %.0f switches over without slowing the guest (a ~%s pause)", std::ceil(ws_pause_ms),
      Duration(ws_pause_s));
  const std::string faster_link = absl::StrFormat("a link of at least %.0f MiB/s (which converges unaided)", unaided_link);
  const std::string no_convergence = absl::StrCat(
      "pre-copy runs to --max-rounds/--timeout and then cancels, or with --policy force pauses the guest ~",
      Duration(ws_pause_s));

  std::string message;
  if (!in.auto_converge) {
    message = absl::StrCat(head, "Auto-converge is off (--no-auto-converge), so expect no convergence: ",
                           no_convergence, ". Instead: allow auto-converge (it would slow the guest by ~",
                           absl::StrFormat("%.0f", std::ceil(needed_percent)), " % or more), ", max_downtime,
                           ", or use ", faster_link);
  } else if (needed_percent > in.throttle_max_percent) {
    message = absl::StrCat(head, "Even auto-converge's deepest throttle (", in.throttle_max_percent,
                           " %) leaves the guest outrunning the link (it would need ",
                           absl::StrFormat("%.1f", needed_percent), " %): expect no convergence; ", no_convergence,
                           ". Instead: ", max_downtime, ", use ", faster_link,
                           ", or migrate when the guest is quieter");
  } else {
    // The controller starts at initial_percent and adds step_percent each round that does not
    // shrink, so it reaches the first level at or above the need after `levels` rounds.
    uint32_t level = std::min(in.throttle_initial_percent, in.throttle_max_percent);
    uint32_t levels = 1;
    while (level < needed_percent && level < in.throttle_max_percent) {
      level = std::min(level + std::max(in.throttle_step_percent, 1u), in.throttle_max_percent);
      ++levels;
    }
    // Then each round leaves `shrink` of the last; their durations add up geometrically.
    const double shrink = dirty * (1 - level / 100.0) / link;
    const double throttled_s = levels * round_s + round_s * shrink / (1 - shrink);
    message = absl::StrCat(
        head, "Expect auto-converge to slow the guest by up to ~", level, " % (it needs ",
        absl::StrFormat("%.0f", std::ceil(needed_percent)), " %; it starts at ", in.throttle_initial_percent,
        " % and adds ", in.throttle_step_percent, " % a round) for ~", Duration(throttled_s),
        " after round 1, ~", Duration(round1_s + throttled_s), " in all. To avoid the slowdown: ", max_downtime,
        ", or use ", faster_link, ". --no-auto-converge avoids it too, but then ", no_convergence);
  }
  return Finding{Severity::kWarning, FindingCode::kConvergenceForecast, "dirty rate", std::move(message)};
}

}  // namespace ferry
