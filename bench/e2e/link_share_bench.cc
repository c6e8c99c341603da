#include "bench/e2e/link_share_bench.h"

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/clock.h"
#include "tools/client/local_cluster.h"

namespace ferry::bench {
namespace {

// The guests: 384 MiB touched before the migration (round 1 long enough for both to overlap),
// dirtied on during it; at most 3 rounds, then switch-over (the figure is round 1's share).
constexpr uint64_t kMemory = 512ull << 20;
constexpr uint64_t kWorkingSet = 384ull << 20;
constexpr double kDirtyRate = 128;
constexpr int kWarmupMs = 3200;

struct Sample {
  int64_t ns = 0;
  uint64_t a = 0, b = 0;
};

struct PairResult {
  bool ok = false;
  std::string error;
  double ratio = 0, window_ms = 0, a_mibps = 0, b_mibps = 0;
};

absl::Status CreateGuest(v1::Agent::Stub& stub, const std::string& name) {
  grpc::ClientContext ctx;
  v1::CreateVmRequest req;
  v1::VmSpec* s = req.mutable_spec();
  s->set_name(name);
  s->set_backend(v1::BACKEND_KIND_SYNTHETIC);
  s->set_memory_bytes(kMemory);
  s->set_vcpus(1);
  s->mutable_workload()->set_working_set_bytes(kWorkingSet);
  s->mutable_workload()->set_dirty_rate_mibps(kDirtyRate);
  s->mutable_workload()->set_pattern("sequential");
  s->mutable_workload()->set_seed(3);
  req.set_start(true);
  v1::VmInfo info;
  grpc::Status st = stub.CreateVm(&ctx, req, &info);
  return st.ok() ? absl::OkStatus() : absl::InternalError(absl::StrCat("create ", name, ": ", st.error_message()));
}

void StopVm(v1::Agent::Stub& stub, const std::string& name) {
  grpc::ClientContext ctx;
  v1::StopVmRequest req;
  req.set_name(name);
  v1::VmInfo info;
  (void)stub.StopVm(&ctx, req, &info);
}

// Both migrations at once; the window is the time both kept sending (each one's bytes grew over
// the last 50 ms), from the first sample where both had sent.
PairResult RunPair(cli::LocalCluster& c, int index, v1::MigrationPriority pa, v1::MigrationPriority pb) {
  PairResult r;
  auto src = c.Stub(0);
  auto dst = c.Stub(1);
  if (!src.ok() || !dst.ok()) return {false, "cannot reach the agents"};
  const std::string va = absl::StrCat("share-a-", index), vb = absl::StrCat("share-b-", index);
  for (const auto& name : {va, vb}) {
    if (absl::Status st = CreateGuest(**src, name); !st.ok()) return {false, std::string(st.message())};
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(kWarmupMs));
  std::string ids[2];
  v1::MigrationPhase phases[2] = {};
  std::mutex mu;
  auto follow = [&](int i, const std::string& vm, v1::MigrationPriority p) {
    grpc::ClientContext ctx;
    v1::MigrateRequest req;
    req.set_vm_name(vm);
    req.set_destination(c.address(1));
    req.set_destination_name(c.name(1));
    req.mutable_options()->set_priority(p);
    req.mutable_options()->set_skip_prechecks(true);  // both start sending at once
    req.mutable_options()->set_max_rounds(3);
    req.mutable_options()->set_policy(v1::CONVERGENCE_POLICY_FORCE_SWITCHOVER);
    auto reader = (*src)->Migrate(&ctx, req);
    v1::MigrationEvent e;
    while (reader->Read(&e)) {
      std::lock_guard lock(mu);
      ids[i] = e.migration_id();
      phases[i] = e.phase();
    }
    (void)reader->Finish();
  };
  std::thread ta(follow, 0, va, pa), tb(follow, 1, vb, pb);
  std::vector<Sample> samples;
  for (;;) {
    std::string id_a, id_b;
    {
      std::lock_guard lock(mu);
      id_a = ids[0];
      id_b = ids[1];
    }
    grpc::ClientContext ctx;
    v1::ListMigrationsResponse list;
    if (!(*src)->ListMigrations(&ctx, v1::ListMigrationsRequest(), &list).ok()) break;
    Sample s;
    s.ns = MonotonicNanos();
    int finished = 0;
    for (const auto& m : list.migrations()) {
      if (m.migration_id() == id_a) s.a = m.link_bytes(), finished += m.finished();
      if (m.migration_id() == id_b) s.b = m.link_bytes(), finished += m.finished();
    }
    samples.push_back(s);
    if (finished == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ta.join();
  tb.join();
  for (const auto& name : {va, vb}) StopVm(**dst, name);
  if (phases[0] != v1::MIGRATION_PHASE_COMPLETED || phases[1] != v1::MIGRATION_PHASE_COMPLETED) {
    return {false, "a migration did not complete"};
  }
  // The longest stretch of samples over which both grew (each against 50 ms before it).
  auto both_grew = [&](size_t i) {
    size_t back = i;
    while (back > 0 && samples[i].ns - samples[back].ns < 50'000'000) --back;
    return back < i && samples[back].a > 0 && samples[back].b > 0 && samples[i].a > samples[back].a &&
           samples[i].b > samples[back].b;
  };
  size_t first = 0, last = 0, run_start = 0;
  bool in_run = false;
  for (size_t i = 1; i < samples.size(); ++i) {
    if (!both_grew(i)) {
      in_run = false;
      continue;
    }
    if (!in_run) run_start = i - 1;
    in_run = true;
    if (i - run_start > last - first) first = run_start, last = i;
  }
  if (last == first) return {false, "the two migrations never sent at the same time"};
  const Sample& s0 = samples[first];
  const Sample& s1 = samples[last];
  r.ok = true;
  r.window_ms = static_cast<double>(s1.ns - s0.ns) / 1e6;
  r.a_mibps = static_cast<double>(s1.a - s0.a) / 1048576.0 / (r.window_ms / 1e3);
  r.b_mibps = static_cast<double>(s1.b - s0.b) / 1048576.0 / (r.window_ms / 1e3);
  r.ratio = r.b_mibps > 0 ? r.a_mibps / r.b_mibps : 0;
  return r;
}

}  // namespace

int RunLinkShareBench(const LinkShareBenchOptions& options) {
  cli::LocalClusterOptions co;
  co.keep_dir = options.keep_logs;
  auto cluster = cli::LocalCluster::Start(co);
  if (!cluster.ok()) {
    std::fprintf(stderr, "migrate-bench: %s\n", std::string(cluster.status().message()).c_str());
    return 1;
  }
  std::printf("link share of two concurrent migrations (synthetic guests, %llu MiB touched each, dirtied at %.0f "
              "MiB/s, TLS, data connections, loopback)\n",
              static_cast<unsigned long long>(kWorkingSet >> 20), kDirtyRate);
  int failed = 0, index = 0;
  for (int rep = 0; rep < options.repeat; ++rep) {
    for (auto [pa, label] : {std::pair{v1::MIGRATION_PRIORITY_HIGH, "high vs standard    "},
                             std::pair{v1::MIGRATION_PRIORITY_STANDARD, "standard vs standard"}}) {
      PairResult r = RunPair(**cluster, index++, pa, v1::MIGRATION_PRIORITY_STANDARD);
      if (!r.ok) {
        ++failed;
        std::printf("%s: %s\n", label, r.error.c_str());
        continue;
      }
      std::printf("%s: ratio %.2f over %.0f ms both sending (%.0f vs %.0f MiB/s)\n", label, r.ratio, r.window_ms,
                  r.a_mibps, r.b_mibps);
      std::fflush(stdout);
    }
  }
  return failed > 0 ? 1 : 0;
}

}  // namespace ferry::bench
