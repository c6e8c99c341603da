// VmRegistry's locked transitions: reserve, adopt, migrate out, stop, release, memory promises,
// and consistent snapshots while other threads change the registry.
#include "engine/agent/vm_registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>

namespace ferry {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

std::unique_ptr<Vm> SyntheticVm(const std::string& name, uint64_t memory_bytes = 16 * kMiB) {
  VmSpec s;
  s.name = name;
  s.backend = Backend::kSynthetic;
  s.memory_bytes = memory_bytes;
  s.workload.working_set_bytes = 1 * kMiB;
  s.workload.dirty_rate_mibps = 10;
  auto vm = CreateVmForBoot(s);
  EXPECT_TRUE(vm.ok()) << vm.status();
  return vm.ok() ? std::move(*vm) : nullptr;
}

TEST(VmRegistry, ANameIsReservedOnceAndAdoptedOnce) {
  VmRegistry vms;
  ASSERT_TRUE(vms.Reserve("a").ok());
  EXPECT_EQ(vms.Reserve("a").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(vms.Find("a")->vm) << "a reserved entry has no VM yet";
  EXPECT_EQ(vms.Adopt("b", SyntheticVm("b"), {}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(vms.Adopt("a", nullptr, {}).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(vms.Adopt("a", SyntheticVm("a"), {"/log", "mig-1"}).ok());
  EXPECT_EQ(vms.Adopt("a", SyntheticVm("a"), {}).code(), absl::StatusCode::kFailedPrecondition);
  auto e = vms.Find("a");
  ASSERT_TRUE(e && e->vm);
  EXPECT_EQ(e->console_log_path, "/log");
  EXPECT_EQ(e->arrived_by_migration, "mig-1");
  vms.Release("a");
  EXPECT_EQ(vms.Find("a"), nullptr);
  EXPECT_EQ(vms.size(), 0u);
}

TEST(VmRegistry, MigrationOutAndStopExcludeEachOther) {
  VmRegistry vms;
  ASSERT_TRUE(vms.Reserve("a").ok());
  EXPECT_EQ(vms.BeginMigrationOut("a", "m").status().code(), absl::StatusCode::kNotFound) << "still arriving";
  EXPECT_EQ(vms.BeginStop("a").status().code(), absl::StatusCode::kNotFound) << "still arriving";
  auto vm = SyntheticVm("a");
  ASSERT_TRUE(vm->Start().ok());
  ASSERT_TRUE(vms.Adopt("a", std::move(vm), {}).ok());

  auto out = vms.BeginMigrationOut("a", "mig-1");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)->outgoing_migration, "mig-1");
  EXPECT_EQ(vms.BeginMigrationOut("a", "mig-2").status().code(), absl::StatusCode::kFailedPrecondition);
  auto stop = vms.BeginStop("a");
  EXPECT_EQ(stop.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(stop.status().message().find("cancel the migration first"), std::string::npos);
  vms.EndMigrationOut("a", false);
  EXPECT_TRUE(vms.Find("a")->outgoing_migration.empty());

  stop = vms.BeginStop("a");
  ASSERT_TRUE(stop.ok()) << stop.status();
  EXPECT_EQ(vms.BeginMigrationOut("a", "mig-3").status().code(), absl::StatusCode::kFailedPrecondition);
  vms.EndStop("a", false);  // a stop that failed leaves the VM registered
  stop = vms.BeginStop("a");
  ASSERT_TRUE(stop.ok());
  EXPECT_TRUE((*stop)->vm->Stop().ok()) << "the snapshot shares the VM itself";
  vms.EndStop("a", true);
  EXPECT_EQ(vms.Find("a"), nullptr);
}

TEST(VmRegistry, AVmThatLeftByMigrationIsRemoved) {
  VmRegistry vms;
  ASSERT_TRUE(vms.Reserve("a").ok());
  auto vm = SyntheticVm("a");
  ASSERT_TRUE(vm->Start().ok());
  ASSERT_TRUE(vms.Adopt("a", std::move(vm), {}).ok());
  auto out = vms.BeginMigrationOut("a", "mig-1");
  ASSERT_TRUE(out.ok());
  vms.EndMigrationOut("a", true);
  EXPECT_EQ(vms.Find("a"), nullptr);
  EXPECT_TRUE((*out)->vm->Stop().ok()) << "the migration's snapshot keeps the VM alive";
}

TEST(VmRegistry, MemoryPromisesAreCheckedAgainstWhatIsLeft) {
  VmRegistry vms;
  const uint64_t available = 100 * kMiB;
  EXPECT_TRUE(vms.ReserveWithMemory("a", 60 * kMiB, available).ok());
  EXPECT_EQ(vms.OutstandingMemoryBytes(), 60 * kMiB);
  absl::Status st = vms.ReserveWithMemory("b", 60 * kMiB, available);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("needs 60 MiB, this host has 40 MiB"), std::string::npos) << st;
  EXPECT_EQ(vms.Find("b"), nullptr) << "a refused reservation leaves no entry";
  EXPECT_TRUE(vms.ReserveWithMemory("b", 40 * kMiB, available).ok());
  vms.Release("a");  // a discarded migration gives its promise back
  EXPECT_EQ(vms.OutstandingMemoryBytes(), 40 * kMiB);
  EXPECT_TRUE(vms.ReserveWithMemory("c", 60 * kMiB, available).ok());
}

TEST(VmRegistry, APromiseShrinksAsTheVmDrawsItsMemory) {
  VmRegistry vms;
  ASSERT_TRUE(vms.ReserveWithMemory("a", 16 * kMiB, 1024 * kMiB).ok());
  auto vm = SyntheticVm("a", 16 * kMiB);
  Vm& v = *vm;
  ASSERT_TRUE(vms.Adopt("a", std::move(vm), {}).ok());
  EXPECT_EQ(vms.OutstandingMemoryBytes(), 16 * kMiB);
  std::memset(v.memory().data(), 1, 8 * kMiB);  // the kernel allocates these pages
  EXPECT_LE(vms.OutstandingMemoryBytes(), 8 * kMiB);
}

TEST(VmRegistry, ReadersSeeConsistentSnapshotsWhileWritersChangeIt) {
  VmRegistry vms;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 200; ++i) {
      EXPECT_TRUE(vms.Reserve("x").ok());
      EXPECT_TRUE(vms.Adopt("x", SyntheticVm("x"), {"/log", "mig"}).ok());
      vms.Release("x");
    }
    done = true;
  });
  uint64_t seen = 0;
  while (!done) {
    for (const auto& [name, e] : vms.List()) {
      // Adopt sets both fields in one transition: a reader never sees one without the other.
      EXPECT_EQ(e->console_log_path.empty(), e->arrived_by_migration.empty());
      ++seen;
    }
  }
  writer.join();
  EXPECT_EQ(vms.size(), 0u);
  (void)seen;
}

}  // namespace
}  // namespace ferry
