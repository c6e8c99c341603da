#pragma once
// Caps the average send rate: call Consume(bytes) after each send; it sleeps as needed.

#include <cstdint>

#include "engine/base/clock.h"

namespace ferry {

class BandwidthLimiter {
 public:
  explicit BandwidthLimiter(double max_mibps) : bytes_per_ns_(max_mibps * 1048576.0 / 1e9) {}
  bool enabled() const { return bytes_per_ns_ > 0; }
  void Consume(uint64_t bytes);

 private:
  double bytes_per_ns_;
  int64_t start_ns_ = 0;
  double sent_ = 0;
};

}  // namespace ferry
