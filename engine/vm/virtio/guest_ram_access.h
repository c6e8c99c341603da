#pragma once
// A device's view of guest RAM: guest-physical ranges to host pointers (through GuestRamRanges,
// so nothing outside the guest's RAM is ever reachable), and the record of what the device wrote
// (device writes never appear in KVM's dirty log, so the VM ORs them in itself).

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/memory/guest_memory.h"
#include "engine/vm/ram_layout.h"

namespace ferry {

class GuestRamAccess {
 public:
  // Called with memfd pages the device wrote, after it wrote them.
  using WriteSink = std::function<void(uint64_t first_page, uint64_t page_count)>;

  GuestRamAccess(GuestMemory& memory, WriteSink on_write);

  // Host address of [gpa, gpa + bytes) when it lies wholly inside one RAM range; nullptr otherwise
  // (also when it wraps or is empty).
  uint8_t* Translate(uint64_t gpa, uint64_t bytes) const;
  // Reports [gpa, gpa + bytes), a range Translate accepted, as written by the device.
  void MarkWritten(uint64_t gpa, uint64_t bytes) const;

 private:
  const RamRange* Find(uint64_t gpa, uint64_t bytes) const;

  GuestMemory& memory_;
  std::vector<RamRange> ranges_;
  WriteSink on_write_;
};

}  // namespace ferry
