#pragma once
// The one dispatch point for port I/O exits (kvmtool's habit): devices register a port range;
// accesses to ports nobody claims read as 0xff and are counted.

#include <atomic>
#include <cstdint>
#include <vector>

namespace ferry {

class PioDevice {
 public:
  virtual ~PioDevice() = default;
  // `data` holds `size` (1, 2 or 4) bytes, little-endian.
  virtual void PioRead(uint16_t port, uint8_t* data, uint32_t size) = 0;
  virtual void PioWrite(uint16_t port, const uint8_t* data, uint32_t size) = 0;
};

class IoBus {
 public:
  // Ranges must not overlap; registration happens before vCPUs run, so lookups take no lock.
  void Register(uint16_t base, uint16_t length, PioDevice* device);
  void Read(uint16_t port, uint8_t* data, uint32_t size);
  void Write(uint16_t port, const uint8_t* data, uint32_t size);
  uint64_t unhandled_accesses() const { return unhandled_.load(std::memory_order_relaxed); }

 private:
  struct Range {
    uint16_t base;
    uint16_t length;
    PioDevice* device;
  };
  PioDevice* Find(uint16_t port) const;

  std::vector<Range> ranges_;
  std::atomic<uint64_t> unhandled_{0};
};

}  // namespace ferry
