#include "engine/net/announce_schedule.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace ferry {

absl::Status AnnounceSchedule::Validate() const {
  if (initial.count() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("announce schedule: initial delay ", initial.count(), " ms is negative"));
  }
  if (step.count() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("announce schedule: step ", step.count(), " ms is negative"));
  }
  if (max < initial) {
    return absl::InvalidArgumentError(absl::StrCat("announce schedule: max delay ", max.count(),
                                                   " ms is below initial delay ",
                                                   initial.count(), " ms"));
  }
  if (rounds > kMaxAnnounceRounds) {
    return absl::InvalidArgumentError(absl::StrCat("announce schedule: ", rounds,
                                                   " rounds is more than the limit of ",
                                                   kMaxAnnounceRounds));
  }
  return absl::OkStatus();
}

std::vector<std::chrono::milliseconds> AnnounceSchedule::Gaps() const {
  std::vector<std::chrono::milliseconds> gaps;
  for (uint32_t k = 1; k < rounds; ++k) {
    gaps.push_back(std::min(initial + step * static_cast<int64_t>(k - 1), max));
  }
  return gaps;
}

std::vector<std::chrono::milliseconds> AnnounceSchedule::Offsets() const {
  std::vector<std::chrono::milliseconds> offsets;
  if (rounds == 0) return offsets;
  std::chrono::milliseconds at{0};
  offsets.push_back(at);
  for (auto gap : Gaps()) {
    at += gap;
    offsets.push_back(at);
  }
  return offsets;
}

}  // namespace ferry
