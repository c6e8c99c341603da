#include "engine/memory/prefault.h"

#include <sys/mman.h>

#include <atomic>

#include "engine/memory/page.h"

namespace ferry {

PrefaultMethod PrefaultRange(uint8_t* base, uint64_t len, PrefaultMethod preferred) {
#ifdef MADV_POPULATE_WRITE
  if (preferred == PrefaultMethod::kPopulateWrite && madvise(base, len, MADV_POPULATE_WRITE) == 0) {
    return PrefaultMethod::kPopulateWrite;
  }
#endif
  for (uint64_t off = 0; off < len; off += kPageSize) {
    // A locked read-modify-write: a store by another thread lands wholly before or after it.
    std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(base + off)).fetch_add(0, std::memory_order_relaxed);
  }
  return PrefaultMethod::kAtomicTouch;
}

}  // namespace ferry
