#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kPageShift = 12;

inline constexpr uint64_t PagesFor(uint64_t bytes) { return (bytes + kPageSize - 1) >> kPageShift; }

// True when the 4 KiB page at `p` (8-byte aligned) holds only zeros.
bool IsZeroPage(const void* p);

}  // namespace ferry
