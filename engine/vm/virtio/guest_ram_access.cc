#include "engine/vm/virtio/guest_ram_access.h"

#include "engine/memory/page.h"

namespace ferry {

GuestRamAccess::GuestRamAccess(GuestMemory& memory, WriteSink on_write)
    : memory_(memory), ranges_(GuestRamRanges(memory.size())), on_write_(std::move(on_write)) {}

const RamRange* GuestRamAccess::Find(uint64_t gpa, uint64_t bytes) const {
  if (bytes == 0) return nullptr;
  for (const RamRange& r : ranges_) {
    // Written so that no sum can wrap: gpa - r.gpa + bytes <= r.bytes.
    if (gpa >= r.gpa && bytes <= r.bytes && gpa - r.gpa <= r.bytes - bytes) return &r;
  }
  return nullptr;
}

uint8_t* GuestRamAccess::Translate(uint64_t gpa, uint64_t bytes) const {
  const RamRange* r = Find(gpa, bytes);
  return r ? memory_.data() + r->offset + (gpa - r->gpa) : nullptr;
}

void GuestRamAccess::MarkWritten(uint64_t gpa, uint64_t bytes) const {
  const RamRange* r = Find(gpa, bytes);
  if (!r || !on_write_) return;
  uint64_t offset = r->offset + (gpa - r->gpa);
  uint64_t first = offset >> kPageShift;
  uint64_t last = (offset + bytes - 1) >> kPageShift;
  on_write_(first, last - first + 1);
}

}  // namespace ferry
