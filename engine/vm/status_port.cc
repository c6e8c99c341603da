#include "engine/vm/status_port.h"

#include <cstring>

#include "engine/guest/guest_abi.h"

namespace ferry {

void StatusPort::PioRead(uint16_t port, uint8_t* data, uint32_t size) { std::memset(data, 0, size); }

void StatusPort::PioWrite(uint16_t port, const uint8_t* data, uint32_t size) {
  uint32_t value = 0;
  std::memcpy(&value, data, size < 4 ? size : 4);
  switch (port) {
    case FERRY_STATUS_HEARTBEAT: monitor_.OnHeartbeat(value); break;
    case FERRY_STATUS_CORRUPTION: monitor_.OnCorruption(value); break;
    case FERRY_STATUS_BOOTED: monitor_.OnBooted(value); break;
    case FERRY_STATUS_SHUTDOWN:
      monitor_.OnShutdown(static_cast<int32_t>(value));
      if (on_shutdown_) on_shutdown_(static_cast<int32_t>(value));
      break;
    case FERRY_STATUS_ROUND: rounds_.store(value, std::memory_order_relaxed); break;
    case FERRY_STATUS_SWEEP: monitor_.OnSweep(value); break;
    default: break;  // the unused bytes of each 4-byte port
  }
}

}  // namespace ferry
