// Page batches: the source encodes dirty pages into MemoryBatch messages (zero check, copy into
// the message), gRPC serializes them, the destination parses and applies them to guest memory.
// A 256 MiB region with every page dirty; argument: percent of pages that are zero.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "engine/memory/dirty_bitmap.h"
#include "engine/memory/guest_memory.h"
#include "engine/migration/page_batches.h"
#include "engine/migration/protocol.h"

namespace ferry {
namespace {

constexpr uint64_t kRegionBytes = 256ull << 20;

// Pages are zero or filled with a non-zero pattern, zero ones scattered at random.
std::unique_ptr<GuestMemory> MakeMemory(int zero_percent) {
  auto mem = GuestMemory::Create(kRegionBytes);
  if (!mem.ok()) return nullptr;
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> d(0, 99);
  for (uint64_t p = 0; p < (*mem)->num_pages(); ++p) {
    if (d(rng) < zero_percent) continue;
    std::memset((*mem)->page(p), static_cast<int>(p % 251) + 1, kPageSize);
  }
  return std::move(*mem);
}

void BM_EncodeDirtyPages_256MiB(benchmark::State& state) {
  auto mem = MakeMemory(static_cast<int>(state.range(0)));
  if (!mem) return state.SkipWithError("cannot allocate 256 MiB of guest memory");
  DirtyBitmap all(mem->num_pages());
  all.SetAll();
  uint64_t batches = 0;
  for (auto _ : state) {
    BatchCounters c;
    batches = 0;
    EncodeDirtyPages(*mem, all, 1, kMaxBatchDataBytes, c, [&](v1::MemoryBatch& b) {
      ++batches;
      benchmark::DoNotOptimize(b.runs_size());
      return true;
    });
  }
  state.SetBytesProcessed(state.iterations() * kRegionBytes);  // guest bytes covered
  state.counters["batches"] = static_cast<double>(batches);
}
BENCHMARK(BM_EncodeDirtyPages_256MiB)->ArgName("zero_pct")->Arg(0)->Arg(50)->Arg(100)
    ->Unit(benchmark::kMillisecond);

std::vector<v1::MemoryBatch> EncodeAll(const GuestMemory& mem) {
  DirtyBitmap all(mem.num_pages());
  all.SetAll();
  std::vector<v1::MemoryBatch> out;
  BatchCounters c;
  EncodeDirtyPages(mem, all, 1, kMaxBatchDataBytes, c, [&](v1::MemoryBatch& b) {
    out.push_back(b);
    return true;
  });
  return out;
}

void BM_ApplyMemoryBatch_256MiB(benchmark::State& state) {
  auto src = MakeMemory(static_cast<int>(state.range(0)));
  auto dst = GuestMemory::Create(kRegionBytes);
  if (!src || !dst.ok()) return state.SkipWithError("cannot allocate guest memory");
  (*dst)->Prefault();  // as the destination does before pages arrive
  std::vector<v1::MemoryBatch> batches = EncodeAll(*src);
  for (auto _ : state) {
    for (const v1::MemoryBatch& b : batches) {
      absl::Status st = ApplyMemoryBatch(b, **dst, nullptr);
      if (!st.ok()) return state.SkipWithError(std::string(st.message()).c_str());
    }
  }
  if (std::memcmp(src->data(), (*dst)->data(), kRegionBytes) != 0) state.SkipWithError("applied memory differs");
  state.SetBytesProcessed(state.iterations() * kRegionBytes);
}
BENCHMARK(BM_ApplyMemoryBatch_256MiB)->ArgName("zero_pct")->Arg(0)->Arg(50)->Arg(100)
    ->Unit(benchmark::kMillisecond);

// One full batch (1 MiB of page data) through protobuf, as gRPC does on each side.
void BM_MemoryBatchSerialize_1MiB(benchmark::State& state) {
  auto mem = MakeMemory(0);
  if (!mem) return state.SkipWithError("cannot allocate guest memory");
  std::vector<v1::MemoryBatch> batches = EncodeAll(*mem);
  v1::PeerMessage msg;
  *msg.mutable_memory() = batches.front();
  std::string wire;
  for (auto _ : state) {
    wire.clear();
    msg.SerializeToString(&wire);
    benchmark::DoNotOptimize(wire.data());
  }
  state.SetBytesProcessed(state.iterations() * wire.size());
}
BENCHMARK(BM_MemoryBatchSerialize_1MiB)->Unit(benchmark::kMicrosecond);

void BM_MemoryBatchParse_1MiB(benchmark::State& state) {
  auto mem = MakeMemory(0);
  if (!mem) return state.SkipWithError("cannot allocate guest memory");
  std::vector<v1::MemoryBatch> batches = EncodeAll(*mem);
  v1::PeerMessage msg;
  *msg.mutable_memory() = batches.front();
  const std::string wire = msg.SerializeAsString();
  v1::PeerMessage parsed;
  for (auto _ : state) {
    if (!parsed.ParseFromString(wire)) return state.SkipWithError("parse failed");
    benchmark::DoNotOptimize(parsed.memory().runs_size());
  }
  state.SetBytesProcessed(state.iterations() * wire.size());
}
BENCHMARK(BM_MemoryBatchParse_1MiB)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ferry
