#include "engine/memory/page.h"

#include <cstring>

namespace ferry {

bool IsZeroPage(const void* p) {
  const auto* w = static_cast<const uint64_t*>(p);
  // OR eight words at a time: the compiler vectorizes this, and a non-zero page usually
  // fails in the first block.
  for (size_t i = 0; i < kPageSize / 8; i += 8) {
    uint64_t acc = w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
    if (acc != 0) return false;
  }
  return true;
}

}  // namespace ferry
