// The virtio-blk device's request path, driven from the host as a polling driver would (no KVM):
// batches of `queue depth` random 4 KiB requests on a 64 MiB sparse file, notified at once and
// waited for on the used ring; beside it, the same 4 KiB random I/O with pread/pwrite one at a
// time on the same file system (the baseline). Buffered I/O: figures are page-cache speed.
// Directory: $FERRY_BENCH_DIR, else /var/tmp.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <string>

#include "engine/vm/virtio/blk_device.h"
#include "tests/vm/virtio_test_driver.h"

namespace ferry {
namespace {

using virtio_test::TestBlkDriver;

constexpr uint64_t kDiskBytes = 64ull << 20;
constexpr uint64_t kBlock = 4096;

std::string DiskPath() {
  const char* dir = std::getenv("FERRY_BENCH_DIR");
  return std::string(dir ? dir : "/var/tmp") + "/ferry-virtio-bench.raw";
}

struct Disk {
  Disk() : path(DiskPath()) {
    int fd = open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, kDiskBytes) != 0) std::abort();
    close(fd);
  }
  ~Disk() { unlink(path.c_str()); }
  std::string path;
};

void RandomRequests(benchmark::State& state, uint32_t type) {
  const uint32_t depth = static_cast<uint32_t>(state.range(0));
  Disk disk;
  auto mem = GuestMemory::Create(16ull << 20);
  if (!mem.ok()) return state.SkipWithError(std::string(mem.status().message()).c_str());
  GuestRamAccess ram(**mem, [](uint64_t, uint64_t) {});
  auto dev = VirtioBlkDevice::Create(disk.path, 0, ram, nullptr);
  if (!dev.ok()) return state.SkipWithError(std::string(dev.status().message()).c_str());
  (*dev)->Resume();
  TestBlkDriver driver(**mem, **dev);
  if (!driver.Init()) return state.SkipWithError("feature negotiation failed");
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<uint64_t> block(0, kDiskBytes / kBlock - 1);
  for (auto _ : state) {
    for (uint32_t i = 0; i < depth; ++i) {
      driver.Post(type, block(rng) * (kBlock / 512), {{TestBlkDriver::kDataGpa + i * kBlock, kBlock}});
    }
    driver.Notify();
    if (driver.WaitUsed(depth).size() != depth) return state.SkipWithError("requests did not complete");
  }
  state.SetItemsProcessed(state.iterations() * depth);
  state.SetBytesProcessed(state.iterations() * depth * kBlock);
}

void BM_VirtioBlkRandomWrite4K(benchmark::State& state) { RandomRequests(state, kVirtioBlkTypeOut); }
void BM_VirtioBlkRandomRead4K(benchmark::State& state) { RandomRequests(state, kVirtioBlkTypeIn); }
BENCHMARK(BM_VirtioBlkRandomWrite4K)->Arg(1)->Arg(8)->Arg(32)->UseRealTime();
BENCHMARK(BM_VirtioBlkRandomRead4K)->Arg(1)->Arg(8)->Arg(32)->UseRealTime();

// The baseline: the file system itself, one synchronous call per 4 KiB.
void FileBaseline(benchmark::State& state, bool write) {
  Disk disk;
  int fd = open(disk.path.c_str(), O_RDWR | O_CLOEXEC);
  std::string buf(kBlock, '\x5a');
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<uint64_t> block(0, kDiskBytes / kBlock - 1);
  for (auto _ : state) {
    const off_t at = static_cast<off_t>(block(rng) * kBlock);
    ssize_t n = write ? pwrite(fd, buf.data(), kBlock, at) : pread(fd, buf.data(), kBlock, at);
    if (n != static_cast<ssize_t>(kBlock)) {
      state.SkipWithError("short I/O");
      break;
    }
  }
  close(fd);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * kBlock);
}

void BM_FilePwriteRandom4K(benchmark::State& state) { FileBaseline(state, true); }
void BM_FilePreadRandom4K(benchmark::State& state) { FileBaseline(state, false); }
BENCHMARK(BM_FilePwriteRandom4K)->UseRealTime();
BENCHMARK(BM_FilePreadRandom4K)->UseRealTime();

}  // namespace
}  // namespace ferry
