// Dirty-bitmap work each pre-copy round does over a 1 GiB guest (262144 pages): find the runs
// of dirty pages, then clear. Argument: dirty pages per 1000 (scattered uniformly at random;
// 1000 = every page, one single run).
#include <benchmark/benchmark.h>

#include <random>

#include "engine/memory/dirty_bitmap.h"
#include "engine/memory/page.h"

namespace ferry {
namespace {

constexpr uint64_t kGuestBytes = 1ull << 30;
constexpr uint64_t kPages = kGuestBytes / kPageSize;

DirtyBitmap MakeBitmap(int64_t per_mille) {
  DirtyBitmap b(kPages);
  if (per_mille >= 1000) {
    b.SetAll();
    return b;
  }
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int> d(0, 999);
  for (uint64_t p = 0; p < kPages; ++p) {
    if (d(rng) < per_mille) b.Set(p);
  }
  return b;
}

void BM_DirtyBitmapForEachRun_1GiB(benchmark::State& state) {
  const DirtyBitmap b = MakeBitmap(state.range(0));
  uint64_t runs = 0, dirty = 0;
  for (auto _ : state) {
    runs = dirty = 0;
    b.ForEachRun([&](uint64_t first, uint64_t n) {
      ++runs;
      dirty += n;
      benchmark::DoNotOptimize(first);
    });
    benchmark::DoNotOptimize(dirty);
  }
  state.SetItemsProcessed(state.iterations() * kPages);  // pages scanned
  state.counters["dirty_pages"] = static_cast<double>(dirty);
  state.counters["runs"] = static_cast<double>(runs);
}
BENCHMARK(BM_DirtyBitmapForEachRun_1GiB)->Arg(0)->Arg(1)->Arg(10)->Arg(100)->Arg(500)->Arg(1000)
    ->Unit(benchmark::kMicrosecond);

void BM_DirtyBitmapClearAll_1GiB(benchmark::State& state) {
  DirtyBitmap b = MakeBitmap(state.range(0));
  for (auto _ : state) {
    b.ClearAll();
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kPages);
}
BENCHMARK(BM_DirtyBitmapClearAll_1GiB)->Arg(10)->Unit(benchmark::kMicrosecond);

// Clearing only the pages that were found dirty, as a round does when it sends page by page.
void BM_DirtyBitmapClearFoundRuns_1GiB(benchmark::State& state) {
  const DirtyBitmap pattern = MakeBitmap(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    DirtyBitmap b = pattern;
    state.ResumeTiming();
    b.ForEachRun([&](uint64_t first, uint64_t n) {
      for (uint64_t p = first; p < first + n; ++p) b.Clear(p);
    });
    benchmark::DoNotOptimize(b.words().data());
  }
  state.SetItemsProcessed(state.iterations() * kPages);
}
BENCHMARK(BM_DirtyBitmapClearFoundRuns_1GiB)->Arg(1)->Arg(10)->Arg(100)->Arg(1000)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ferry
