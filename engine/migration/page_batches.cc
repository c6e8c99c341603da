#include "engine/migration/page_batches.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/migration/protocol.h"

namespace ferry {
namespace {

// Appends [first, first+count) as runs: consecutive zero pages become one marker run,
// consecutive data pages one data run.
void AppendRuns(const GuestMemory& mem, uint64_t first, uint64_t count, v1::MemoryBatch& batch,
                BatchCounters& c, const DirtyBitmap* populated) {
  auto is_zero = [&](uint64_t page) {
    return (populated && !populated->Test(page)) || IsZeroPage(mem.page(page));
  };
  uint64_t p = first;
  const uint64_t end = first + count;
  while (p < end) {
    bool zero = is_zero(p);
    uint64_t q = p + 1;
    while (q < end && is_zero(q) == zero) ++q;
    v1::PageRun* run = batch.add_runs();
    run->set_first_page(p);
    run->set_count(static_cast<uint32_t>(q - p));
    run->set_zero(zero);
    if (zero) {
      c.zero_pages += q - p;
    } else {
      run->set_data(mem.page(p), (q - p) * kPageSize);
      c.data_bytes += (q - p) * kPageSize;
    }
    c.pages += q - p;
    p = q;
  }
}

}  // namespace

bool EncodeDirtyPages(const GuestMemory& mem, const DirtyBitmap& pages, uint32_t round,
                      uint64_t max_data_bytes, BatchCounters& counters,
                      const std::function<bool(v1::MemoryBatch&)>& emit, const DirtyBitmap* populated) {
  const uint64_t max_pages_per_batch = std::max<uint64_t>(1, max_data_bytes / kPageSize);
  v1::MemoryBatch batch;
  batch.set_round(round);
  uint64_t batch_pages = 0;  // pages (zero or not) in the current batch, bounds its size
  bool stopped = false;
  auto flush = [&]() {
    if (batch.runs_size() == 0) return true;
    bool ok = emit(batch);
    batch.Clear();
    batch.set_round(round);
    batch_pages = 0;
    return ok;
  };
  pages.ForEachRun([&](uint64_t first, uint64_t count) {
    while (count > 0 && !stopped) {
      uint64_t take = std::min(count, max_pages_per_batch - batch_pages);
      AppendRuns(mem, first, take, batch, counters, populated);
      batch_pages += take;
      first += take;
      count -= take;
      if (batch_pages >= max_pages_per_batch && !flush()) stopped = true;
    }
  });
  if (stopped) return false;
  return flush();
}

absl::Status ApplyMemoryBatch(const v1::MemoryBatch& batch, GuestMemory& mem, BatchCounters* counters) {
  const uint64_t num_pages = mem.num_pages();
  uint64_t data_bytes = 0;
  for (const v1::PageRun& run : batch.runs()) data_bytes += run.data().size();
  if (data_bytes > kMaxBatchDataBytes) {
    return absl::InvalidArgumentError(absl::StrCat("memory batch carries ", data_bytes, " bytes of page data; the limit is ",
                                                   kMaxBatchDataBytes, " (docs/wire_protocol.md)"));
  }
  for (const v1::PageRun& run : batch.runs()) {
    if (run.count() == 0) return absl::InvalidArgumentError("page run with count 0");
    if (run.first_page() >= num_pages || run.count() > num_pages - run.first_page()) {
      return absl::OutOfRangeError(absl::StrCat("pages ", run.first_page(), "..",
                                                run.first_page() + run.count() - 1,
                                                " are outside guest memory of ", num_pages, " pages"));
    }
    uint64_t want = run.zero() ? 0 : uint64_t{run.count()} * kPageSize;
    if (run.data().size() != want) {
      return absl::InvalidArgumentError(absl::StrCat("page run at page ", run.first_page(), " of ",
                                                     run.count(), " pages carries ", run.data().size(),
                                                     " bytes, expected ", want));
    }
  }
  for (const v1::PageRun& run : batch.runs()) {
    uint8_t* dst = mem.page(run.first_page());
    if (run.zero()) {
      if (batch.round() != 1) std::memset(dst, 0, uint64_t{run.count()} * kPageSize);
    } else {
      std::memcpy(dst, run.data().data(), run.data().size());
    }
    if (counters) {
      counters->pages += run.count();
      if (run.zero()) counters->zero_pages += run.count();
      counters->data_bytes += run.data().size();
    }
  }
  return absl::OkStatus();
}

}  // namespace ferry
