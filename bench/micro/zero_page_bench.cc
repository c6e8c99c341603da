// IsZeroPage on one 4 KiB page: the zero-page marker check runs on every page sent.
// zero = all zeros (full scan), first = non-zero first byte (early exit),
// last = only the last byte non-zero (full scan, then false).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>

#include "engine/memory/page.h"

namespace ferry {
namespace {

enum Kind { kZero = 0, kFirstByte = 1, kLastByte = 2 };

void BM_IsZeroPage(benchmark::State& state) {
  auto* page = static_cast<uint8_t*>(std::aligned_alloc(kPageSize, kPageSize));
  std::memset(page, 0, kPageSize);
  if (state.range(0) == kFirstByte) page[0] = 1;
  if (state.range(0) == kLastByte) page[kPageSize - 1] = 1;
  bool zero = false;
  for (auto _ : state) {
    benchmark::DoNotOptimize(page);
    zero = IsZeroPage(page);
    benchmark::DoNotOptimize(zero);
  }
  if (zero != (state.range(0) == kZero)) state.SkipWithError("IsZeroPage gave the wrong answer");
  state.SetBytesProcessed(state.iterations() * kPageSize);
  std::free(page);
}
BENCHMARK(BM_IsZeroPage)->ArgName("zero0_first1_last2")->Arg(kZero)->Arg(kFirstByte)
    ->Arg(kLastByte);

// A 1 GiB region, half its pages zero (alternating), scanned page by page: includes the cost
// of streaming from memory rather than L1.
void BM_IsZeroPageScan_1GiB_HalfZero(benchmark::State& state) {
  constexpr uint64_t kBytes = 1ull << 30;
  auto* mem = static_cast<uint8_t*>(std::aligned_alloc(kPageSize, kBytes));
  std::memset(mem, 0, kBytes);
  for (uint64_t off = 0; off < kBytes; off += 2 * kPageSize) mem[off + kPageSize / 2] = 1;
  uint64_t zeros = 0;
  for (auto _ : state) {
    zeros = 0;
    for (uint64_t off = 0; off < kBytes; off += kPageSize) zeros += IsZeroPage(mem + off);
    benchmark::DoNotOptimize(zeros);
  }
  state.SetBytesProcessed(state.iterations() * kBytes);
  state.counters["zero_pages"] = static_cast<double>(zeros);
  std::free(mem);
}
BENCHMARK(BM_IsZeroPageScan_1GiB_HalfZero)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ferry
