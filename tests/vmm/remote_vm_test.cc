// RemoteVm against a real ferry-vmm process (synthetic backend): the Vm calls cross the socket,
// guest memory is shared, dirty pages come back, a dead VMM is reported, a restarted agent adopts
// a running VMM and reports a stale socket as lost, and the VMM refuses what the agent may not ask.
#include "engine/agent/remote_vm.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "engine/agent/vm_registry.h"
#include "engine/agent/vmm_adoption.h"
#include "engine/agent/vmm_launcher.h"
#include "engine/vm/vm_spec_proto.h"
#include "engine/vmm/vmm_client.h"
#include "engine/vmm/vmm_wire.h"
#include "tests/vmm/vmm_test_util.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kMiB = 1ull << 20;

using vmm_test::ProcessGone;
using vmm_test::WaitUntil;

class RemoteVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-vmm-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    data_dir_ = tmpl;
    binary_ = DefaultVmmBinaryPath();
    ASSERT_EQ(access(binary_.c_str(), X_OK), 0) << "ferry-vmm not found at " << binary_ << " (set FERRY_BIN_DIR)";
  }
  void TearDown() override {
    // No ferry-vmm outlives the test.
    for (const auto& e : fs::directory_iterator(data_dir_ + "/vms", ec_)) {
      std::ifstream in(e.path() / "vmm.pid");
      pid_t pid = 0;
      if (in >> pid && pid > 1) {
        kill(pid, SIGKILL);
        WaitUntil([pid] { return ProcessGone(pid); }, 5);
      }
    }
    fs::remove_all(data_dir_, ec_);
  }

  VmSpec Spec(const std::string& name) {
    VmSpec s;
    s.name = name;
    s.backend = Backend::kSynthetic;
    s.memory_bytes = 16 * kMiB;
    s.workload.working_set_bytes = 2 * kMiB;
    s.workload.dirty_rate_mibps = 20;
    s.console_log_path = VmDir(name) + "/console.log";
    fs::create_directories(VmDir(name));
    return s;
  }
  std::string VmDir(const std::string& name) { return data_dir_ + "/vms/" + name; }

  std::unique_ptr<Vm> Launch(const std::string& name, bool for_restore = false) {
    auto vm = LaunchVmm(Spec(name), for_restore, VmDir(name), binary_);
    EXPECT_TRUE(vm.ok()) << vm.status();
    return vm.ok() ? std::move(*vm) : nullptr;
  }

  std::string data_dir_;
  std::string binary_;
  std::error_code ec_;
};

TEST_F(RemoteVmTest, RunsPausesAndSavesStateInItsOwnProcess) {
  auto vm = Launch("runner");
  ASSERT_TRUE(vm);
  auto* remote = dynamic_cast<RemoteVm*>(vm.get());
  ASSERT_NE(remote, nullptr);
  EXPECT_NE(remote->vmm_pid(), getpid());
  EXPECT_EQ(vm->run_state(), VmRunState::kCreated);
  EXPECT_EQ(vm->spec().name, "runner");
  ASSERT_TRUE(vm->Start().ok());
  EXPECT_EQ(vm->run_state(), VmRunState::kRunning);
  ASSERT_TRUE(WaitUntil([&] { return vm->health().heartbeats > 0; }, 10)) << "no heartbeat from the VMM's guest";
  EXPECT_EQ(vm->SaveState().status().code(), absl::StatusCode::kFailedPrecondition) << "save requires a pause";
  ASSERT_TRUE(vm->Pause().ok());
  EXPECT_EQ(vm->run_state(), VmRunState::kPaused);
  auto state = vm->SaveState();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->memory_bytes(), 16 * kMiB);
  EXPECT_EQ(state->backend(), v1::BACKEND_KIND_SYNTHETIC);
  ASSERT_TRUE(vm->Resume().ok());
  ASSERT_TRUE(vm->SetThrottle(40).ok());
  EXPECT_EQ(vm->throttle_percent(), 40u);
  EXPECT_EQ(vm->SetThrottle(150).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(vm->SetThrottle(0).ok());
  const pid_t pid = remote->vmm_pid();
  ASSERT_TRUE(vm->Stop().ok());
  EXPECT_EQ(vm->run_state(), VmRunState::kStopped);
  EXPECT_TRUE(WaitUntil([pid] { return ProcessGone(pid); }, 5)) << "the VMM did not exit after stop";
  EXPECT_TRUE(WaitUntil([&] { return !fs::exists(VmDir("runner") + "/vmm.sock"); }, 5)) << "socket left behind";
  EXPECT_TRUE(remote->failure().empty()) << "a stop asked for is no failure: " << remote->failure();
}

TEST_F(RemoteVmTest, GuestMemoryIsSharedAndDirtyPagesComeBackInTheReply) {
  auto vm = Launch("dirty");
  ASSERT_TRUE(vm);
  ASSERT_TRUE(vm->Start().ok());
  ASSERT_TRUE(WaitUntil([&] { return vm->health().heartbeats > 1; }, 10));
  // The guest's working set, written by the VMM's workload, is visible in the agent's mapping.
  uint64_t nonzero = 0;
  for (uint64_t p = 0; p < vm->memory().num_pages(); ++p) {
    const uint8_t* page = vm->memory().page(p);
    for (int i = 0; i < 4096; ++i) {
      if (page[i]) {
        ++nonzero;
        break;
      }
    }
  }
  EXPECT_GT(nonzero, 0u) << "the agent's mapping does not see the guest's pages";
  ASSERT_TRUE(vm->EnableDirtyTracking().ok());
  DirtyBitmap dirty(vm->memory().num_pages());
  ASSERT_TRUE(WaitUntil(
      [&] {
        EXPECT_TRUE(vm->CollectDirtyPages(dirty).ok());
        return dirty.Count() > 0;
      },
      10))
      << "no dirty page came back";
  EXPECT_LT(dirty.Count(), vm->memory().num_pages()) << "every page dirty: not the workload's pages";
  ASSERT_TRUE(vm->DisableDirtyTracking().ok());
  ASSERT_TRUE(vm->Stop().ok());
}

TEST_F(RemoteVmTest, AVmmThatDiesIsReportedAsFailed) {
  auto vm = Launch("victim");
  ASSERT_TRUE(vm);
  ASSERT_TRUE(vm->Start().ok());
  auto* remote = dynamic_cast<RemoteVm*>(vm.get());
  ASSERT_EQ(kill(remote->vmm_pid(), SIGKILL), 0);
  ASSERT_TRUE(WaitUntil([&] { return !remote->failure().empty(); }, 10)) << "the dead VMM went unnoticed";
  EXPECT_NE(remote->failure().find("killed by signal 9"), std::string::npos) << remote->failure();
  EXPECT_EQ(vm->run_state(), VmRunState::kStopped);
  EXPECT_EQ(vm->Pause().code(), absl::StatusCode::kUnavailable);
  VmEntry e;
  e.vm = std::shared_ptr<Vm>(std::move(vm));
  v1::VmInfo info = DescribeVm("victim", e);
  EXPECT_EQ(info.state(), v1::VM_POWER_STATE_FAILED);
  EXPECT_NE(info.failure().find("went away"), std::string::npos) << info.failure();
}

TEST_F(RemoteVmTest, AVmmWhoseVmNeverStartedEndsWithItsConnection) {
  auto vm = Launch("arriving", /*for_restore=*/true);
  ASSERT_TRUE(vm);
  const pid_t pid = dynamic_cast<RemoteVm*>(vm.get())->vmm_pid();
  vm.reset();  // an incoming migration that failed: the receiver drops the VM
  EXPECT_TRUE(WaitUntil([pid] { return ProcessGone(pid); }, 5)) << "an unused restore-mode VMM stayed behind";
}

TEST_F(RemoteVmTest, ARestartedAgentAdoptsARunningVmmAndReportsAStaleSocket) {
  pid_t pid = -1;
  {
    auto vm = Launch("survivor");
    ASSERT_TRUE(vm);
    ASSERT_TRUE(vm->Start().ok());
    pid = dynamic_cast<RemoteVm*>(vm.get())->vmm_pid();
  }  // the agent lets go (as when it exits): the VMM keeps its VM running
  ASSERT_FALSE(ProcessGone(pid));
  // A VM directory whose VMM died without cleaning up: a socket file nobody listens on.
  fs::create_directories(VmDir("ghost"));
  {
    auto server_dir = VmDir("ghost") + "/vmm.sock";
    UniqueFd s(socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, server_dir.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    std::ofstream(VmDir("ghost") + "/vmm.pid") << "999999\n";
  }
  VmRegistry vms;
  AdoptionSummary summary = AdoptRunningVmms(data_dir_, vms);
  EXPECT_EQ(summary.adopted, 1);
  EXPECT_EQ(summary.lost, 1);
  auto survivor = vms.Find("survivor");
  ASSERT_TRUE(survivor && survivor->vm);
  EXPECT_EQ(survivor->vm->run_state(), VmRunState::kRunning);
  EXPECT_EQ(survivor->vm->spec().memory_bytes, 16 * kMiB);
  const uint64_t before = survivor->vm->health().heartbeats;
  EXPECT_TRUE(WaitUntil([&] { return survivor->vm->health().heartbeats > before; }, 10)) << "adopted guest not beating";
  auto ghost = vms.Find("ghost");
  ASSERT_TRUE(ghost);
  v1::VmInfo info = DescribeVm("ghost", *ghost);
  EXPECT_EQ(info.state(), v1::VM_POWER_STATE_FAILED);
  EXPECT_NE(info.failure().find("pid 999999"), std::string::npos) << info.failure();
  EXPECT_FALSE(fs::exists(VmDir("ghost") + "/vmm.sock")) << "the stale socket was not cleaned up";
  // Stopping the lost VM forgets it.
  ASSERT_TRUE(vms.BeginStop("ghost").ok());
  vms.EndStop("ghost", true);
  EXPECT_FALSE(vms.Find("ghost"));
  ASSERT_TRUE(survivor->vm->Stop().ok());
  EXPECT_TRUE(WaitUntil([pid] { return ProcessGone(pid); }, 5));
}

// What the VMM refuses from its socket, asked directly (no RemoteVm in between).
TEST_F(RemoteVmTest, TheVmmRefusesWhatTheAgentMayNotAsk) {
  auto vm = Launch("strict");
  ASSERT_TRUE(vm);
  vm.reset();  // never started: this VMM ends with that connection; use a fresh one below
  auto fresh = Launch("strict2");
  ASSERT_TRUE(fresh);
  ASSERT_TRUE(fresh->Start().ok());
  fresh.reset();  // running: it stays, and waits for the next connection
  auto conn = VmmConnection::Connect(VmDir("strict2") + "/vmm.sock", 2000);
  ASSERT_TRUE(conn.ok()) << conn.status();
  v1::VmmRequest create;
  *create.mutable_create()->mutable_spec() = VmSpecToProto(Spec("strict2"));
  create.mutable_create()->set_mode(v1::VMM_START_MODE_BOOT);
  EXPECT_EQ(conn->Call(create, 5000).status().code(), absl::StatusCode::kFailedPrecondition) << "a second create";
  v1::VmmRequest empty;
  EXPECT_EQ(conn->Call(empty, 5000).status().code(), absl::StatusCode::kInvalidArgument) << "an empty request";
  v1::VmmRequest restore;
  restore.mutable_restore_state()->set_memory_bytes(1);
  EXPECT_FALSE(conn->Call(restore, 5000).ok()) << "restoring into a running VM";
  // A newer protocol version is refused by name.
  v1::VmmRequest future;
  future.set_version(kVmmProtocolVersion + 1);
  future.set_describe(true);
  ASSERT_TRUE(WriteVmmFrame(conn->fd(), future, 2000).ok());
  v1::VmmReply reply;
  ASSERT_TRUE(ReadVmmFrame(conn->fd(), reply, 5000, 5000).ok());
  EXPECT_EQ(reply.code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(reply.message().find("version"), std::string::npos) << reply.message();
  // An oversized frame: an error reply, then the VMM hangs up; the VM keeps running.
  const uint32_t len = kMaxVmmFrameBytes + 1;
  uint8_t header[4] = {uint8_t(len), uint8_t(len >> 8), uint8_t(len >> 16), uint8_t(len >> 24)};
  ASSERT_EQ(write(conn->fd(), header, 4), 4);
  v1::VmmReply refused;
  ASSERT_TRUE(ReadVmmFrame(conn->fd(), refused, 5000, 5000).ok());
  EXPECT_EQ(refused.code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  v1::VmmReply none;
  EXPECT_EQ(ReadVmmFrame(conn->fd(), none, 5000, 5000).code(), absl::StatusCode::kUnavailable);
  auto again = VmmConnection::Connect(VmDir("strict2") + "/vmm.sock", 2000);
  ASSERT_TRUE(again.ok()) << again.status();
  auto attached = RemoteVm::Attach(std::move(*again));
  ASSERT_TRUE(attached.ok()) << attached.status();
  EXPECT_EQ((*attached)->run_state(), VmRunState::kRunning);
  ASSERT_TRUE((*attached)->Stop().ok());
}

}  // namespace
}  // namespace ferry
