#include "engine/migration/bandwidth_limiter.h"

#include <thread>

namespace ferry {

void BandwidthLimiter::Consume(uint64_t bytes) {
  if (!enabled()) return;
  int64_t now = MonotonicNanos();
  if (start_ns_ == 0) start_ns_ = now;
  sent_ += static_cast<double>(bytes);
  int64_t due = start_ns_ + static_cast<int64_t>(sent_ / bytes_per_ns_);
  if (due > now) std::this_thread::sleep_for(std::chrono::nanoseconds(due - now));
}

}  // namespace ferry
