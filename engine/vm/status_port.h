#pragma once
// The guest's status ports (guest_abi.h FERRY_STATUS_*): one 32-bit OUT per report, forwarded
// to the GuestMonitor. Reads return 0.

#include <atomic>
#include <cstdint>
#include <functional>

#include "engine/vm/guest_monitor.h"
#include "engine/vm/io_bus.h"

namespace ferry {

class StatusPort : public PioDevice {
 public:
  // `on_shutdown` runs on the vCPU thread that reported FERRY_STATUS_SHUTDOWN.
  StatusPort(GuestMonitor& monitor, std::function<void(int32_t)> on_shutdown)
      : monitor_(monitor), on_shutdown_(std::move(on_shutdown)) {}

  void PioRead(uint16_t port, uint8_t* data, uint32_t size) override;
  void PioWrite(uint16_t port, const uint8_t* data, uint32_t size) override;
  uint64_t rounds() const { return rounds_.load(std::memory_order_relaxed); }

 private:
  GuestMonitor& monitor_;
  std::function<void(int32_t)> on_shutdown_;
  std::atomic<uint64_t> rounds_{0};
};

}  // namespace ferry
