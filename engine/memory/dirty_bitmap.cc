#include "engine/memory/dirty_bitmap.h"

#include <algorithm>
#include <bit>
#include <cassert>

namespace ferry {

DirtyBitmap::DirtyBitmap(uint64_t num_pages) : num_pages_(num_pages), words_((num_pages + 63) / 64, 0) {}

void DirtyBitmap::Set(uint64_t page) {
  assert(page < num_pages_);
  words_[page / 64] |= uint64_t{1} << (page % 64);
}

void DirtyBitmap::SetRange(uint64_t first_page, uint64_t count) {
  uint64_t end = std::min(first_page + count, num_pages_);
  uint64_t p = first_page;
  for (; p < end && p % 64 != 0; ++p) Set(p);
  for (; p + 64 <= end; p += 64) words_[p / 64] = ~uint64_t{0};
  for (; p < end; ++p) Set(p);
}

bool DirtyBitmap::Test(uint64_t page) const {
  return page < num_pages_ && (words_[page / 64] >> (page % 64)) & 1;
}

void DirtyBitmap::Clear(uint64_t page) {
  if (page < num_pages_) words_[page / 64] &= ~(uint64_t{1} << (page % 64));
}

void DirtyBitmap::ClearAll() { std::fill(words_.begin(), words_.end(), 0); }

void DirtyBitmap::SetAll() {
  std::fill(words_.begin(), words_.end(), ~uint64_t{0});
  if (num_pages_ % 64 != 0 && !words_.empty()) words_.back() = (uint64_t{1} << (num_pages_ % 64)) - 1;
}

void DirtyBitmap::OrWords(uint64_t first_page, std::span<const uint64_t> words) {
  assert(first_page % 64 == 0);
  uint64_t base = first_page / 64;
  for (size_t i = 0; i < words.size() && base + i < words_.size(); ++i) words_[base + i] |= words[i];
  if (num_pages_ % 64 != 0 && !words_.empty()) words_.back() &= (uint64_t{1} << (num_pages_ % 64)) - 1;
}

void DirtyBitmap::Or(const DirtyBitmap& other) { OrWords(0, other.words_); }

uint64_t DirtyBitmap::Count() const {
  uint64_t n = 0;
  for (uint64_t w : words_) n += std::popcount(w);
  return n;
}

bool DirtyBitmap::Empty() const {
  for (uint64_t w : words_)
    if (w) return false;
  return true;
}

void DirtyBitmap::ForEachRun(const std::function<void(uint64_t, uint64_t)>& fn) const {
  uint64_t run_start = 0, run_len = 0;
  for (size_t wi = 0; wi < words_.size(); ++wi) {
    uint64_t w = words_[wi];
    if (w == 0) {
      if (run_len) fn(run_start, run_len), run_len = 0;
      continue;
    }
    if (w == ~uint64_t{0}) {  // a whole word of set pages extends (or starts) the run
      if (run_len == 0) run_start = wi * 64;
      run_len += 64;
      continue;
    }
    for (int b = 0; b < 64; ++b) {
      uint64_t page = wi * 64 + b;
      if ((w >> b) & 1) {
        if (run_len == 0) run_start = page;
        ++run_len;
      } else if (run_len) {
        fn(run_start, run_len);
        run_len = 0;
      }
    }
  }
  if (run_len) fn(run_start, run_len);
}

}  // namespace ferry
