#pragma once
// Where guest RAM (one memfd, GuestMemory) appears in guest-physical space: QEMU's below/above
// 4 GiB split. Memfd [0, 3 GiB) sits at GPA 0 and the rest at GPA 4 GiB, leaving the 32-bit MMIO
// hole (and KVM's TSS and identity-map pages) between. Pages are indexed by memfd offset
// everywhere else (dirty bitmaps, migration), so both hosts agree whatever the split.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine/guest/guest_abi.h"

namespace ferry {

struct RamRange {
  uint64_t gpa;     // guest-physical start
  uint64_t offset;  // memfd offset of its first byte
  uint64_t bytes;
};

// One range for guests up to 3 GiB, two above, in GPA order; range i is KVM memory slot i.
inline std::vector<RamRange> GuestRamRanges(uint64_t memory_bytes) {
  std::vector<RamRange> ranges{{0, 0, std::min<uint64_t>(memory_bytes, FERRY_GPA_LOW_RAM_END)}};
  if (memory_bytes > FERRY_GPA_LOW_RAM_END) {
    ranges.push_back({FERRY_GPA_HIGH_RAM, FERRY_GPA_LOW_RAM_END, memory_bytes - FERRY_GPA_LOW_RAM_END});
  }
  return ranges;
}

}  // namespace ferry
