#include "engine/vm/virtio/split_queue.h"

#include <atomic>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/status.h"

namespace ferry {
namespace {

constexpr uint16_t kDescNext = 1;
constexpr uint16_t kDescWrite = 2;
constexpr uint16_t kDescIndirect = 4;
constexpr uint16_t kAvailNoInterrupt = 1;

struct Desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(Desc) == 16);

uint64_t DescBytes(uint16_t n) { return 16ull * n; }
uint64_t AvailBytes(uint16_t n) { return 6 + 2ull * n; }  // flags, idx, ring[n], used_event
uint64_t UsedBytes(uint16_t n) { return 6 + 8ull * n; }   // flags, idx, ring[n], avail_event

uint16_t LoadAcquire16(uint8_t* p) {
  return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).load(std::memory_order_acquire);
}

absl::Status CheckRing(const GuestRamAccess& ram, const char* name, uint64_t gpa, uint64_t bytes, uint64_t align) {
  if (gpa % align != 0) {
    return absl::InvalidArgumentError(absl::StrFormat("%s ring at 0x%x is not %d-byte aligned", name, gpa, align));
  }
  if (!ram.Translate(gpa, bytes)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s ring at 0x%x (%d bytes) is not inside guest RAM", name, gpa, bytes));
  }
  return absl::OkStatus();
}

}  // namespace

SplitQueue::SplitQueue(const GuestRamAccess& ram, const QueueLayout& layout, uint16_t next_avail, uint16_t next_used)
    : ram_(&ram), layout_(layout), desc_(ram.Translate(layout.desc_gpa, DescBytes(layout.size))),
      avail_(ram.Translate(layout.avail_gpa, AvailBytes(layout.size))),
      used_(ram.Translate(layout.used_gpa, UsedBytes(layout.size))), next_avail_(next_avail),
      next_used_(next_used) {}

absl::StatusOr<SplitQueue> SplitQueue::Create(const GuestRamAccess& ram, const QueueLayout& layout,
                                              uint16_t next_avail, uint16_t next_used) {
  if (layout.size == 0 || (layout.size & (layout.size - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("queue size ", layout.size, " is not a power of 2"));
  }
  absl::Status st = CheckRing(ram, "descriptor", layout.desc_gpa, DescBytes(layout.size), 16);
  if (st.ok()) st = CheckRing(ram, "available", layout.avail_gpa, AvailBytes(layout.size), 2);
  if (st.ok()) st = CheckRing(ram, "used", layout.used_gpa, UsedBytes(layout.size), 4);
  if (!st.ok()) return st;
  return SplitQueue(ram, layout, next_avail, next_used);
}

std::optional<uint16_t> SplitQueue::PopAvailable() {
  uint16_t published = LoadAcquire16(avail_ + 2);
  if (published == next_avail_) return std::nullopt;
  uint16_t head;
  std::memcpy(&head, avail_ + 4 + 2 * (next_avail_ % layout_.size), 2);
  ++next_avail_;
  return head;
}

absl::StatusOr<std::vector<ChainSegment>> SplitQueue::ReadChain(uint16_t head, uint32_t max_segments) const {
  std::vector<ChainSegment> chain;
  uint16_t index = head;
  for (;;) {
    if (index >= layout_.size) {
      return absl::InvalidArgumentError(absl::StrCat("descriptor index ", index, " >= queue size ", layout_.size));
    }
    if (chain.size() >= layout_.size || chain.size() >= max_segments) {
      return absl::InvalidArgumentError(absl::StrCat("chain at ", head, " is longer than ",
                                                     std::min<uint32_t>(layout_.size, max_segments),
                                                     " descriptors (a loop?)"));
    }
    Desc d;
    std::memcpy(&d, desc_ + DescBytes(index), sizeof d);
    if (d.flags & kDescIndirect) {
      return absl::InvalidArgumentError(absl::StrCat("descriptor ", index, " is indirect (not negotiated)"));
    }
    // A buffer outside guest RAM keeps host == nullptr: the request fails, the queue goes on.
    uint8_t* host = ram_->Translate(d.addr, d.len);
    chain.push_back(ChainSegment{d.addr, d.len, (d.flags & kDescWrite) != 0, host});
    if (!(d.flags & kDescNext)) return chain;
    index = d.next;
  }
}

bool SplitQueue::PushUsed(uint16_t head, uint32_t written) {
  uint64_t slot = 4 + 8ull * (next_used_ % layout_.size);
  uint32_t elem[2] = {head, written};
  std::memcpy(used_ + slot, elem, sizeof elem);
  ++next_used_;
  std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(used_ + 2)).store(next_used_, std::memory_order_release);
  ram_->MarkWritten(layout_.used_gpa + slot, sizeof elem);
  ram_->MarkWritten(layout_.used_gpa + 2, 2);
  uint16_t flags;
  std::memcpy(&flags, avail_, 2);
  return (flags & kAvailNoInterrupt) == 0;
}

}  // namespace ferry
