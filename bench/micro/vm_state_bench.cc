// Device state in the stop-and-copy window: capturing it from a paused VM (SaveState), encoding
// and decoding the versioned message (v1::VmState), and loading it into a fresh VM built for
// restore (RestoreState). Backend argument: 1 = KVM microVM (skipped without /dev/kvm),
// 2 = synthetic. Guests: 64 MiB, 1 vCPU, 16 MiB working set.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "engine/vm/vm.h"

namespace ferry {
namespace {

VmSpec BenchSpec(int64_t backend) {
  VmSpec s;
  s.name = "bench-state";
  s.backend = backend == 1 ? Backend::kKvm : Backend::kSynthetic;
  s.memory_bytes = 64ull << 20;
  s.vcpus = 1;
  s.workload.working_set_bytes = 16ull << 20;
  s.workload.dirty_rate_mibps = 8;
  return s;
}

// A booted, then paused VM (its state is what a migration captures).
absl::StatusOr<std::unique_ptr<Vm>> PausedVm(int64_t backend) {
  if (backend == 1 && access("/dev/kvm", R_OK | W_OK) != 0) {
    return absl::FailedPreconditionError("skipped: /dev/kvm is not available on this host");
  }
  auto vm = CreateVmForBoot(BenchSpec(backend));
  if (!vm.ok()) return vm.status();
  if (absl::Status st = (*vm)->Start(); !st.ok()) return st;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the guest boot and run
  if (absl::Status st = (*vm)->Pause(); !st.ok()) return st;
  return vm;
}

void BM_SaveState(benchmark::State& state) {
  auto vm = PausedVm(state.range(0));
  if (!vm.ok()) return state.SkipWithError(std::string(vm.status().message()).c_str());
  size_t bytes = 0;
  for (auto _ : state) {
    auto s = (*vm)->SaveState();
    if (!s.ok()) return state.SkipWithError(std::string(s.status().message()).c_str());
    bytes = s->ByteSizeLong();
  }
  state.counters["state_bytes"] = static_cast<double>(bytes);
  (void)(*vm)->Stop();
}
BENCHMARK(BM_SaveState)->ArgName("kvm1_synthetic2")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);

void BM_VmStateSerialize(benchmark::State& state) {
  auto vm = PausedVm(state.range(0));
  if (!vm.ok()) return state.SkipWithError(std::string(vm.status().message()).c_str());
  auto s = (*vm)->SaveState();
  (void)(*vm)->Stop();
  if (!s.ok()) return state.SkipWithError(std::string(s.status().message()).c_str());
  std::string wire;
  for (auto _ : state) {
    wire.clear();
    s->SerializeToString(&wire);
    benchmark::DoNotOptimize(wire.data());
  }
  state.SetBytesProcessed(state.iterations() * wire.size());
  state.counters["state_bytes"] = static_cast<double>(wire.size());
}
BENCHMARK(BM_VmStateSerialize)->ArgName("kvm1_synthetic2")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);

void BM_VmStateParse(benchmark::State& state) {
  auto vm = PausedVm(state.range(0));
  if (!vm.ok()) return state.SkipWithError(std::string(vm.status().message()).c_str());
  auto s = (*vm)->SaveState();
  (void)(*vm)->Stop();
  if (!s.ok()) return state.SkipWithError(std::string(s.status().message()).c_str());
  const std::string wire = s->SerializeAsString();
  v1::VmState parsed;
  for (auto _ : state) {
    if (!parsed.ParseFromString(wire)) return state.SkipWithError("VmState did not parse");
    benchmark::DoNotOptimize(parsed.vcpus_size());
  }
  state.SetBytesProcessed(state.iterations() * wire.size());
}
BENCHMARK(BM_VmStateParse)->ArgName("kvm1_synthetic2")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);

// Loading state needs a VM built for restore that has not run, so each iteration builds one
// (untimed) and times RestoreState only.
void BM_RestoreState(benchmark::State& state) {
  auto vm = PausedVm(state.range(0));
  if (!vm.ok()) return state.SkipWithError(std::string(vm.status().message()).c_str());
  auto s = (*vm)->SaveState();
  (void)(*vm)->Stop();
  vm->reset();
  if (!s.ok()) return state.SkipWithError(std::string(s.status().message()).c_str());
  for (auto _ : state) {
    state.PauseTiming();
    auto fresh = CreateVmForRestore(BenchSpec(state.range(0)));
    if (!fresh.ok()) return state.SkipWithError(std::string(fresh.status().message()).c_str());
    state.ResumeTiming();
    absl::Status st = (*fresh)->RestoreState(*s);
    state.PauseTiming();
    if (!st.ok()) return state.SkipWithError(std::string(st.message()).c_str());
    fresh->reset();
    state.ResumeTiming();
  }
}
BENCHMARK(BM_RestoreState)->ArgName("kvm1_synthetic2")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)
    ->Iterations(50);

}  // namespace
}  // namespace ferry
