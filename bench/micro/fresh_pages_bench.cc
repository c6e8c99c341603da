// Writing 1 MiB batches into guest memory nobody has touched yet, as the destination's round 1
// does: through the mapping (a page fault allocates each page) or through the memfd with pwrite
// (GuestMemory::WriteThroughFile: the page cache allocates them, no fault each). Each iteration
// writes 64 MiB into a fresh GuestMemory; cpu_per_page (seconds of process CPU per page, shown
// as e.g. 2.8u) is the figure (docs/performance.md).
#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <sys/mman.h>

#include <cstring>
#include <ctime>
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

double ProcessCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// The same writes into memory allocated before them, as a destination could do while it sets up
// (docs/performance.md, "Round 1 per thread"): arg 0 fallocate on the memfd, then pwrite;
// arg 1 fallocate and MADV_POPULATE_WRITE on the mapping, then memcpy through the mapping.
// cpu_per_page is the write alone (the timed part); prep_per_page the allocation before it.
void BM_PreparedPages(benchmark::State& state) {
  const bool populate = state.range(0) == 1;
  std::vector<uint8_t> batch(kBatch, 0x5A);
  double prep = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto mem = GuestMemory::Create(kBytes);
    if (!mem.ok()) {
      state.SkipWithError(std::string(mem.status().message()).c_str());
      return;
    }
    double t0 = ProcessCpuSeconds();
    if (fallocate((*mem)->fd(), 0, 0, static_cast<off_t>(kBytes)) != 0) {
      state.SkipWithError("fallocate on the guest memfd failed");
      return;
    }
#ifdef MADV_POPULATE_WRITE
    if (populate && madvise((*mem)->data(), kBytes, MADV_POPULATE_WRITE) != 0) {
      state.SkipWithError("MADV_POPULATE_WRITE failed");
      return;
    }
#endif
    prep += ProcessCpuSeconds() - t0;
    state.ResumeTiming();
    for (uint64_t off = 0; off < kBytes; off += kBatch) {
      if (!populate) {
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
    mem->reset();
    state.ResumeTiming();
  }
  const double pages = static_cast<double>(state.iterations() * (kBytes / kPageSize));
  state.counters["cpu_per_page"] = benchmark::Counter(pages, benchmark::Counter::kIsRate | benchmark::Counter::kInvert,
                                                     benchmark::Counter::kIs1000);
  state.counters["prep_us_per_page"] = pages > 0 ? prep / pages * 1e6 : 0;
}
BENCHMARK(BM_PreparedPages)->ArgName("fallocate0_populate1")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();

}  // namespace
}  // namespace ferry
