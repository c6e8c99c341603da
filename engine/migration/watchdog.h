#pragma once
// A bound on one wait: calls `on_expiry` once from its own thread unless disarmed first. The
// source arms one around every wait on the destination (a reply, the pause) and breaks the link
// on expiry, so a blocked Send/Receive returns.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace ferry {

class Watchdog {
 public:
  Watchdog(std::chrono::milliseconds timeout, std::function<void()> on_expiry);
  ~Watchdog();  // disarms and joins
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // After it returns, `on_expiry` has either run to its end or will never run.
  void Disarm();
  bool fired() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool disarmed_ = false;
  bool fired_ = false;
  std::thread thread_;
};

}  // namespace ferry
