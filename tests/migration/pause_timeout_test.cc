// A source guest whose pause does not complete in time: the migration rolls back and the guest
// runs on the source, resumed and reported running — never left half-paused. The slow or failing
// pause is a test wrapper around a real synthetic VM (the production classes have no switch).
#include <chrono>
#include <memory>
#include <thread>

#include "engine/migration/migration_receiver.h"
#include "engine/migration/precopy_source.h"
#include "engine/vm/synthetic_vm.h"
#include "gtest/gtest.h"
#include "tests/migration/fault_channel.h"
#include "tests/migration/forwarding_vm.h"

namespace ferry {
namespace {

using std::chrono::milliseconds;

// A VM whose Pause takes `delay` before the real pause; with `fail_after_pausing` it then reports
// a timeout although the real VM did stop (a pause that gave up half-way).
class SlowPauseVm : public ForwardingVm {
 public:
  SlowPauseVm(std::unique_ptr<Vm> inner, milliseconds delay, bool fail_after_pausing)
      : ForwardingVm(std::move(inner)), delay_(delay), fail_after_pausing_(fail_after_pausing) {}
  absl::Status Pause() override {
    ++pauses;
    std::this_thread::sleep_for(delay_);
    absl::Status st = ForwardingVm::Pause();
    if (st.ok() && fail_after_pausing_) return absl::DeadlineExceededError("test fault: vCPU 0 did not stop in time");
    return st;
  }
  int pauses = 0;

 private:
  milliseconds delay_;
  bool fail_after_pausing_;
};

VmSpec Spec(const std::string& name) {
  VmSpec s;
  s.name = name;
  s.backend = Backend::kSynthetic;
  s.memory_bytes = 16ull << 20;
  s.vcpus = 1;
  s.workload.working_set_bytes = 4ull << 20;
  s.workload.dirty_rate_mibps = 4;
  s.workload.pattern = "random";
  return s;
}

struct Outcome {
  SourceResult result;
  MigrationReceiver::State receiver_state;
  bool arrived = false;
};

Outcome MigrateWith(Vm& source, uint32_t max_pause_ms) {
  std::unique_ptr<Vm> arrived;
  ReceiverHooks hooks;
  hooks.agent_name = "destination";
  hooks.create_vm = [](const VmSpec& spec) { return CreateSyntheticVm(spec, /*for_restore=*/true); };
  hooks.adopt_vm = [&arrived](std::unique_ptr<Vm> vm, const v1::StartMigration&) { arrived = std::move(vm); };
  MigrationReceiver receiver(std::move(hooks));
  FaultChannel channel(receiver, [](const v1::PeerMessage&) { return LinkFault::kNone; });
  SourceConfig c;
  c.migration_id = "mig-pause";
  c.source_agent = "source";
  c.options.set_max_pause_ms(max_pause_ms);
  c.options.set_max_downtime_ms(1000);  // switch over after round 1
  c.reply_timeout = milliseconds(2000);
  c.resolve_timeout = milliseconds(300);
  c.ask_destination_runs_vm = [&receiver]() -> absl::StatusOr<bool> {
    return receiver.state() == MigrationReceiver::State::kResumed;
  };
  PrecopySource engine(source, channel, std::move(c), nullptr);
  Outcome o;
  o.result = engine.Run();
  o.receiver_state = receiver.state();
  o.arrived = arrived != nullptr;
  if (arrived) (void)arrived->Stop();
  return o;
}

void ExpectRunsOnTheSource(Vm& vm) {
  ASSERT_EQ(vm.run_state(), VmRunState::kRunning) << "the guest was left paused";
  uint64_t before = vm.health().heartbeats;
  std::this_thread::sleep_for(milliseconds(200));
  GuestHealth h = vm.health();
  EXPECT_GT(h.heartbeats, before) << "reported running, but the guest makes no progress";
  EXPECT_EQ(h.corruptions, 0u) << (h.corruption_reports.empty() ? "" : h.corruption_reports[0]);
}

std::unique_ptr<SlowPauseVm> StartedSource(milliseconds delay, bool fail_after_pausing) {
  auto vm = CreateSyntheticVm(Spec("pause-test"), /*for_restore=*/false);
  EXPECT_TRUE(vm.ok()) << vm.status();
  if (!vm.ok()) return nullptr;
  auto slow = std::make_unique<SlowPauseVm>(std::move(*vm), delay, fail_after_pausing);
  EXPECT_TRUE(slow->Start().ok());
  std::this_thread::sleep_for(milliseconds(150));  // the workload fills its working set
  return slow;
}

TEST(PauseTimeout, APauseSlowerThanMaxPauseRollsBackAndTheGuestRunsOnTheSource) {
  auto vm = StartedSource(milliseconds(900), /*fail_after_pausing=*/false);
  ASSERT_NE(vm, nullptr);
  Outcome o = MigrateWith(*vm, /*max_pause_ms=*/300);
  EXPECT_EQ(vm->pauses, 1);
  EXPECT_EQ(o.result.outcome, SourceOutcome::kFailed) << o.result.status;
  EXPECT_NE(o.result.status.message().find("max pause"), std::string::npos) << o.result.status;
  EXPECT_EQ(o.receiver_state, MigrationReceiver::State::kAborted);
  EXPECT_FALSE(o.arrived) << "the destination runs a copy too";
  ExpectRunsOnTheSource(*vm);
  (void)vm->Stop();
}

TEST(PauseTimeout, APauseThatGivesUpHalfWayIsUndoneAndTheGuestRunsOnTheSource) {
  auto vm = StartedSource(milliseconds(0), /*fail_after_pausing=*/true);
  ASSERT_NE(vm, nullptr);
  Outcome o = MigrateWith(*vm, /*max_pause_ms=*/3000);
  EXPECT_EQ(vm->pauses, 1);
  EXPECT_EQ(o.result.outcome, SourceOutcome::kFailed) << o.result.status;
  EXPECT_NE(o.result.status.message().find("did not stop"), std::string::npos) << o.result.status;
  EXPECT_EQ(o.receiver_state, MigrationReceiver::State::kAborted);
  EXPECT_FALSE(o.arrived);
  ExpectRunsOnTheSource(*vm);
  (void)vm->Stop();
}

}  // namespace
}  // namespace ferry
