#pragma once
// Monotonic host time. All durations Ferry reports are measured with this clock
// (CLOCK_MONOTONIC is shared by every process on a host, so two agents' stamps compare).

#include <cstdint>
#include <ctime>

namespace ferry {

inline int64_t MonotonicNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

inline double NanosToMillis(int64_t ns) { return static_cast<double>(ns) / 1e6; }

class Stopwatch {
 public:
  Stopwatch() : start_(MonotonicNanos()) {}
  int64_t ElapsedNanos() const { return MonotonicNanos() - start_; }
  double ElapsedMillis() const { return NanosToMillis(ElapsedNanos()); }
  void Restart() { start_ = MonotonicNanos(); }

 private:
  int64_t start_;
};

}  // namespace ferry
