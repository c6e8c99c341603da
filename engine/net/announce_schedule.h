#pragma once
// When announcement frames go out: QEMU's self-announce parameters, as data. Frame 0 leaves at
// once; gap k (k = 1..rounds-1) is min(initial + (k-1)*step, max). With QEMU's defaults
// (50, 550, 5, 100) that is frames at 0, 50, 200, 450 and 800 ms.

#include <chrono>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace ferry {

struct AnnounceSchedule {
  std::chrono::milliseconds initial{50};
  std::chrono::milliseconds max{550};
  uint32_t rounds = 5;
  std::chrono::milliseconds step{100};

  // InvalidArgument naming the field for negative durations, max < initial, or more rounds
  // than anyone would want (a typo like 5000 would otherwise spam the network for minutes).
  absl::Status Validate() const;
  // rounds-1 gaps between consecutive frames.
  std::vector<std::chrono::milliseconds> Gaps() const;
  // rounds offsets from the first frame: 0, gap1, gap1+gap2, ...
  std::vector<std::chrono::milliseconds> Offsets() const;
};

inline constexpr uint32_t kMaxAnnounceRounds = 100;

}  // namespace ferry
