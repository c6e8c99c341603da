#pragma once
// Guest RAM: one memfd, mapped shared, so the VMM, KVM and (later) a transport sending straight
// from guest memory all see the same pages. Guest-physical address 0 is offset 0.

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "absl/status/statusor.h"
#include "engine/base/unique_fd.h"
#include "engine/memory/dirty_bitmap.h"
#include "engine/memory/page.h"

namespace ferry {

class GuestMemory {
 public:
  // Allocates `bytes` (a multiple of the page size) of guest RAM. Refuses sizes larger than the
  // host's physical memory with a clear error instead of failing later on first touch.
  static absl::StatusOr<std::unique_ptr<GuestMemory>> Create(uint64_t bytes);
  // Maps another process's guest RAM (a memfd received over a socket, docs/vmm_process.md) shared,
  // so both see the same pages. `bytes` must be the memfd's size.
  static absl::StatusOr<std::unique_ptr<GuestMemory>> WrapExisting(UniqueFd fd, uint64_t bytes);
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  uint64_t size() const { return size_; }
  uint64_t num_pages() const { return size_ >> kPageShift; }
  uint8_t* data() { return base_; }
  const uint8_t* data() const { return base_; }
  uint8_t* page(uint64_t page_index) { return base_ + (page_index << kPageShift); }
  const uint8_t* page(uint64_t page_index) const { return base_ + (page_index << kPageShift); }
  int fd() const { return fd_.get(); }

  // Faults every page in now, so the first guest or network write does not pay for it. Works in
  // 16 MiB steps and returns early once `stop` is set (a migration must not wait for it).
  void Prefault(const std::atomic<bool>* stop = nullptr);

  // Copies `bytes` (whole pages) from `src` into guest memory at `first_page` through the memfd
  // (pwrite), not through the mapping: for pages nobody has touched yet the page cache allocates
  // them without a page fault each (about half the cost per page on the hosts measured,
  // docs/performance.md). Pages already mapped are written just as correctly, only not faster.
  absl::Status WriteThroughFile(uint64_t first_page, const uint8_t* src, uint64_t bytes);

  // Sets in `out` every page that may hold data; the others are holes of the memfd, zero
  // without being read (reading a shmem hole would allocate it). Falls back to all pages.
  void MarkPopulatedPages(DirtyBitmap& out) const;

 private:
  GuestMemory(UniqueFd fd, uint8_t* base, uint64_t size) : fd_(std::move(fd)), base_(base), size_(size) {}

  UniqueFd fd_;
  uint8_t* base_;
  uint64_t size_;
};

}  // namespace ferry
