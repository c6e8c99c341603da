#include "engine/migration/watchdog.h"

namespace ferry {

Watchdog::Watchdog(std::chrono::milliseconds timeout, std::function<void()> on_expiry) {
  thread_ = std::thread([this, timeout, on_expiry = std::move(on_expiry)] {
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, timeout, [this] { return disarmed_; })) return;
    fired_ = true;
    lock.unlock();
    on_expiry();
  });
}

Watchdog::~Watchdog() { Disarm(); }

void Watchdog::Disarm() {
  {
    std::lock_guard lock(mu_);
    disarmed_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

bool Watchdog::fired() const {
  std::lock_guard lock(mu_);
  return fired_;
}

}  // namespace ferry
