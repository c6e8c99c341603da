#pragma once
// Faulting memory in for writing without changing its content, safe while other threads (the
// guest, incoming page batches) write the same pages.

#include <cstdint>

namespace ferry {

enum class PrefaultMethod {
  kPopulateWrite = 1,  // MADV_POPULATE_WRITE (Linux 5.14+): the kernel faults the range in
  kAtomicTouch = 2,    // an atomic add of 0 to one word per page: a write fault that never loses a
                       // concurrent write (a plain `*p = *p` would write back a stale value)
};

// Faults in [base, base + len) (page-aligned) and returns the method used: kAtomicTouch when it
// was asked for or when the kernel refuses MADV_POPULATE_WRITE.
PrefaultMethod PrefaultRange(uint8_t* base, uint64_t len, PrefaultMethod preferred = PrefaultMethod::kPopulateWrite);

}  // namespace ferry
