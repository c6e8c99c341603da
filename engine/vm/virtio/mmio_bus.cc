#include "engine/vm/virtio/mmio_bus.h"

#include <cstring>

namespace ferry {

void MmioBus::Register(uint64_t base, uint64_t length, MmioDevice* device) {
  windows_.push_back(Window{base, length, device});
}

const MmioBus::Window* MmioBus::Find(uint64_t gpa, uint32_t size) const {
  for (const Window& w : windows_) {
    // The whole access inside the window; never a sum that can wrap.
    if (gpa >= w.base && size <= w.length && gpa - w.base <= w.length - size) return &w;
  }
  return nullptr;
}

void MmioBus::Read(uint64_t gpa, uint8_t* data, uint32_t size) {
  if (const Window* w = Find(gpa, size)) return w->device->MmioRead(gpa - w->base, data, size);
  unhandled_.fetch_add(1, std::memory_order_relaxed);
  std::memset(data, 0xff, size);
}

void MmioBus::Write(uint64_t gpa, const uint8_t* data, uint32_t size) {
  if (const Window* w = Find(gpa, size)) return w->device->MmioWrite(gpa - w->base, data, size);
  unhandled_.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace ferry
