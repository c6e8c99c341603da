#include "engine/vm/io_bus.h"

#include <cstring>

namespace ferry {

void IoBus::Register(uint16_t base, uint16_t length, PioDevice* device) {
  ranges_.push_back(Range{base, length, device});
}

PioDevice* IoBus::Find(uint16_t port) const {
  for (const Range& r : ranges_) {
    if (port >= r.base && port - r.base < r.length) return r.device;
  }
  return nullptr;
}

void IoBus::Read(uint16_t port, uint8_t* data, uint32_t size) {
  if (PioDevice* d = Find(port)) return d->PioRead(port, data, size);
  unhandled_.fetch_add(1, std::memory_order_relaxed);
  std::memset(data, 0xff, size);
}

void IoBus::Write(uint16_t port, const uint8_t* data, uint32_t size) {
  if (PioDevice* d = Find(port)) return d->PioWrite(port, data, size);
  unhandled_.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace ferry
