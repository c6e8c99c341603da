#pragma once
// The one dispatch point for MMIO exits (the port-I/O bus's twin, io_bus.h): devices register a
// guest-physical window; accesses nobody claims read as all-ones and are counted.

#include <atomic>
#include <cstdint>
#include <vector>

namespace ferry {

class MmioDevice {
 public:
  virtual ~MmioDevice() = default;
  // `offset` from the window's start; `data` holds `size` (1, 2, 4 or 8) bytes, little-endian.
  virtual void MmioRead(uint64_t offset, uint8_t* data, uint32_t size) = 0;
  virtual void MmioWrite(uint64_t offset, const uint8_t* data, uint32_t size) = 0;
};

class MmioBus {
 public:
  // Windows must not overlap; registration happens before vCPUs run, so lookups take no lock.
  void Register(uint64_t base, uint64_t length, MmioDevice* device);
  void Read(uint64_t gpa, uint8_t* data, uint32_t size);
  void Write(uint64_t gpa, const uint8_t* data, uint32_t size);
  uint64_t unhandled_accesses() const { return unhandled_.load(std::memory_order_relaxed); }

 private:
  struct Window {
    uint64_t base;
    uint64_t length;
    MmioDevice* device;
  };
  const Window* Find(uint64_t gpa, uint32_t size) const;

  std::vector<Window> windows_;
  std::atomic<uint64_t> unhandled_{0};
};

}  // namespace ferry
