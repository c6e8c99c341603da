// Building one 60-byte RARP announcement frame (done rounds x NICs times per migration).
#include <benchmark/benchmark.h>

#include "engine/net/rarp_frame.h"

namespace ferry {
namespace {

void BM_BuildRarpFrame(benchmark::State& state) {
  MacAddress mac({0x52, 0x54, 0x00, 0x12, 0x34, 0x56});
  for (auto _ : state) {
    benchmark::DoNotOptimize(mac);
    RarpFrame f = BuildRarpFrame(mac);
    benchmark::DoNotOptimize(f);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_BuildRarpFrame);

}  // namespace
}  // namespace ferry
