#pragma once
// One bit per guest page. KVM's dirty log uses the same layout (64-bit words, bit i of word w
// is page w*64+i), so a KVM log can be OR'ed in directly.

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace ferry {

class DirtyBitmap {
 public:
  DirtyBitmap() = default;
  explicit DirtyBitmap(uint64_t num_pages);

  uint64_t num_pages() const { return num_pages_; }
  std::span<uint64_t> words() { return words_; }
  std::span<const uint64_t> words() const { return words_; }

  void Set(uint64_t page);
  void SetRange(uint64_t first_page, uint64_t count);
  bool Test(uint64_t page) const;
  void Clear(uint64_t page);
  void ClearAll();
  void SetAll();
  // OR in `words`, which describe pages starting at `first_page` (must be a multiple of 64).
  void OrWords(uint64_t first_page, std::span<const uint64_t> words);
  void Or(const DirtyBitmap& other);
  uint64_t Count() const;
  bool Empty() const;

  // Calls fn(first_page, count) for each run of consecutive set pages, in order.
  void ForEachRun(const std::function<void(uint64_t, uint64_t)>& fn) const;

 private:
  uint64_t num_pages_ = 0;
  std::vector<uint64_t> words_;
};

}  // namespace ferry
