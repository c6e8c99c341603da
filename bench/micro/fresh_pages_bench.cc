// Writing 1 MiB batches into guest memory nobody has touched yet, as the destination's round 1
// does: through the mapping (a page fault allocates each page) or through the memfd with pwrite
// (GuestMemory::WriteThroughFile: the page cache allocates them, no fault each). Each iteration
// writes 64 MiB into a fresh GuestMemory; cpu_per_page (seconds of process CPU per page, shown
// as e.g. 2.8u) is the figure (docs/performance.md).
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "engine/memory/guest_memory.h"

namespace ferry {
namespace {

constexpr uint64_t kBytes = 64ull << 20;
constexpr uint64_t kBatch = 1ull << 20;

void BM_FreshPages(benchmark::State& state) {
  const bool through_file = state.range(0) == 1;
  std::vector<uint8_t> batch(kBatch, 0x5A);
  for (auto _ : state) {
    state.PauseTiming();
    auto mem = GuestMemory::Create(kBytes);
    if (!mem.ok()) {
      state.SkipWithError(std::string(mem.status().message()).c_str());
      return;
    }
    state.ResumeTiming();
    for (uint64_t off = 0; off < kBytes; off += kBatch) {
      if (through_file) {
        if (!(*mem)->WriteThroughFile(off >> kPageShift, batch.data(), kBatch).ok()) {
          state.SkipWithError("WriteThroughFile failed");
          return;
        }
      } else {
        std::memcpy((*mem)->data() + off, batch.data(), kBatch);
      }
    }
    benchmark::DoNotOptimize((*mem)->data());
    state.PauseTiming();
    mem->reset();  // frees the pages outside the timed part
    state.ResumeTiming();
  }
  state.SetBytesProcessed(state.iterations() * kBytes);
  state.counters["cpu_per_page"] = benchmark::Counter(static_cast<double>(state.iterations() * (kBytes / kPageSize)),
                                                     benchmark::Counter::kIsRate | benchmark::Counter::kInvert,
                                                     benchmark::Counter::kIs1000);
}
BENCHMARK(BM_FreshPages)->ArgName("mapping0_file1")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();

}  // namespace
}  // namespace ferry
