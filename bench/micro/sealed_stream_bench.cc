// The sealed data path (AES-256-GCM records, engine/transport/sealed_stream.h): in-place seal and
// open of 1 MiB records (the cipher alone), and a socketpair stream of sealed records between two
// threads (cipher + framing + copies), next to the same stream unsealed.
#include <benchmark/benchmark.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "engine/transport/sealed_stream.h"

namespace ferry {
namespace {

constexpr size_t kRecord = 1u << 20;

void BM_SealInPlace(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  auto key = MigrationKey::Generate();
  auto sealer = RecordSealer::Create(*key, 0, SealDirection::kSourceToDestination);
  if (!key.ok() || !sealer.ok()) return state.SkipWithError("cannot create a sealer");
  std::vector<uint8_t> record(n + kSealOverheadBytes, 0x5a);
  for (auto _ : state) {
    absl::Status st = sealer->SealInPlace(record.data(), n);
    if (!st.ok()) return state.SkipWithError(std::string(st.message()).c_str());
    benchmark::DoNotOptimize(record.data());
  }
  state.SetBytesProcessed(state.iterations() * n);
}
BENCHMARK(BM_SealInPlace)->Arg(4096)->Arg(kRecord);

void BM_OpenInPlace(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  auto key = MigrationKey::Generate();
  if (!key.ok()) return state.SkipWithError("cannot create a key");
  auto sealer = RecordSealer::Create(*key, 0, SealDirection::kSourceToDestination);
  auto opener = RecordOpener::Create(*key, 0, SealDirection::kSourceToDestination);
  if (!sealer.ok() || !opener.ok()) return state.SkipWithError("cannot create a sealer/opener");
  // Records must be opened in order, so seal a fresh one per iteration outside the timing.
  std::vector<uint8_t> record(n + kSealOverheadBytes, 0x5a);
  for (auto _ : state) {
    state.PauseTiming();
    (void)sealer->SealInPlace(record.data(), n);
    state.ResumeTiming();
    auto got = opener->OpenInPlace(record.data(), record.size());
    if (!got.ok()) return state.SkipWithError(std::string(got.status().message()).c_str());
    benchmark::DoNotOptimize(*got);
  }
  state.SetBytesProcessed(state.iterations() * n);
}
BENCHMARK(BM_OpenInPlace)->Arg(4096)->Arg(kRecord);

// 256 MiB through a socketpair, 1 MiB records; arg 1 = sealed, 0 = plain writes/reads.
void BM_SocketStream_256MiB(benchmark::State& state) {
  const bool sealed = state.range(0) == 1;
  constexpr size_t kTotal = 256u << 20;
  auto key = MigrationKey::Generate();
  if (!key.ok()) return state.SkipWithError("cannot create a key");
  for (auto _ : state) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return state.SkipWithError("socketpair failed");
    auto sealer = RecordSealer::Create(*key, 1, SealDirection::kSourceToDestination);
    auto opener = RecordOpener::Create(*key, 1, SealDirection::kSourceToDestination);
    std::thread writer([&] {
      std::vector<uint8_t> plain(kRecord, 0x11);
      for (size_t sent = 0; sent < kTotal; sent += kRecord) {
        if (sealed) {
          if (!WriteSealedRecord(sv[0], *sealer, plain.data(), plain.size()).ok()) break;
        } else {
          size_t off = 0;
          while (off < plain.size()) {
            ssize_t w = write(sv[0], plain.data() + off, plain.size() - off);
            if (w <= 0) break;
            off += static_cast<size_t>(w);
          }
        }
      }
      shutdown(sv[0], SHUT_WR);
    });
    size_t got = 0;
    std::vector<uint8_t> buf(kRecord);
    while (true) {
      if (sealed) {
        auto more = ReadSealedRecord(sv[1], *opener, buf);
        if (!more.ok() || !*more) break;
        got += buf.size();
      } else {
        ssize_t r = read(sv[1], buf.data(), buf.size());
        if (r <= 0) break;
        got += static_cast<size_t>(r);
      }
    }
    writer.join();
    close(sv[0]);
    close(sv[1]);
    if (got != kTotal) return state.SkipWithError("stream ended early");
  }
  state.SetBytesProcessed(state.iterations() * kTotal);
}
BENCHMARK(BM_SocketStream_256MiB)->ArgName("sealed")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace ferry
