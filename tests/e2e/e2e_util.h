#pragma once
// Helpers for end-to-end tests over real agent processes (tools/client/local_cluster.h).

#include <unistd.h>

#include <chrono>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "proto/ferry/v1/agent.grpc.pb.h"
#include "tools/client/agent_client.h"
#include "tools/client/guest_verify.h"
#include "tools/client/local_cluster.h"

namespace ferry::e2e {

inline bool KvmUsable() { return access("/dev/kvm", R_OK | W_OK) == 0; }

// How pages travel: every migration test runs on both (MigrationOptions.transport).
struct TransportParam {
  v1::Transport kind;
  const char* name;
};
inline void PrintTo(const TransportParam& t, std::ostream* os) { *os << t.name; }
inline constexpr TransportParam kDataTransport{v1::TRANSPORT_DATA, "Data"};
inline constexpr TransportParam kGrpcTransport{v1::TRANSPORT_GRPC, "Grpc"};

// The statistics name the transport the migration used: data connections sealed with AES-GCM
// (plaintext between --insecure agents), or the gRPC stream (TLS unless --insecure).
inline void ExpectTransport(const v1::MigrationStats& s, v1::Transport kind, bool tls) {
  if (kind == v1::TRANSPORT_GRPC) {
    EXPECT_EQ(s.transport(), tls ? "grpc+tls" : "grpc");
    EXPECT_EQ(s.connections(), 0u) << "pages on the gRPC stream use no data connection";
    EXPECT_EQ(s.encrypted(), tls);
    return;
  }
  EXPECT_GT(s.connections(), 0u) << s.transport();
  EXPECT_EQ(s.transport(), (tls ? "data+aes-gcm x" : "data x") + std::to_string(s.connections()));
  EXPECT_EQ(s.encrypted(), tls);
}

inline v1::VmSpec GuestSpec(const std::string& name, v1::BackendKind backend, uint64_t memory_mib,
                            uint64_t ws_mib, double rate_mibps) {
  v1::VmSpec s;
  s.set_name(name);
  s.set_backend(backend);
  s.set_memory_bytes(memory_mib << 20);
  s.set_vcpus(1);
  s.mutable_workload()->set_working_set_bytes(ws_mib << 20);
  s.mutable_workload()->set_dirty_rate_mibps(rate_mibps);
  s.mutable_workload()->set_pattern("random");
  s.mutable_workload()->set_seed(7);
  return s;
}

inline grpc::Status CreateVm(v1::Agent::Stub& stub, const v1::VmSpec& spec) {
  grpc::ClientContext ctx;
  v1::CreateVmRequest req;
  *req.mutable_spec() = spec;
  req.set_start(true);
  v1::VmInfo info;
  return stub.CreateVm(&ctx, req, &info);
}

inline grpc::Status GetVm(v1::Agent::Stub& stub, const std::string& name, v1::VmInfo* info) {
  grpc::ClientContext ctx;
  v1::GetVmRequest req;
  req.set_name(name);
  return stub.GetVm(&ctx, req, info);
}

// Cancels migration `id` on the agent behind `stub` (the source's, or the destination's).
inline grpc::Status CancelMigration(v1::Agent::Stub& stub, const std::string& id) {
  grpc::ClientContext ctx;
  v1::CancelMigrationRequest req;
  req.set_migration_id(id);
  v1::MigrationInfo info;
  return stub.CancelMigration(&ctx, req, &info);
}

inline v1::ListVmsResponse ListVms(v1::Agent::Stub& stub) {
  grpc::ClientContext ctx;
  v1::ListVmsResponse resp;
  (void)stub.ListVms(&ctx, v1::ListVmsRequest(), &resp);
  return resp;
}

// Waits until `name` has sent at least `count` heartbeats (false after `timeout_s`).
inline bool WaitForHeartbeats(v1::Agent::Stub& stub, const std::string& name, uint64_t count, double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    v1::VmInfo info;
    if (GetVm(stub, name, &info).ok() && info.health().heartbeats() >= count) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// The destination discards an aborted VM once it has read the abort; give it a moment.
inline int VmsAfterSettling(v1::Agent::Stub& stub, double timeout_s = 3) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  int n = ListVms(stub).vms_size();
  while (n != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    n = ListVms(stub).vms_size();
  }
  return n;
}

inline v1::MigrateRequest MigrateTo(const cli::LocalCluster& c, int dst, const std::string& vm) {
  v1::MigrateRequest req;
  req.set_vm_name(vm);
  req.set_destination(c.address(dst));
  req.set_destination_name(c.name(dst));
  return req;
}

// `req` sent to the source with its transport set to `kind`.
inline v1::MigrateRequest WithTransport(v1::MigrateRequest req, v1::Transport kind) {
  req.mutable_options()->set_transport(kind);
  return req;
}

// Follows a migration to its end, keeping every event (MigrateWithProgress keeps only the last).
inline std::vector<v1::MigrationEvent> MigrateCollectingEvents(v1::Agent::Stub& stub, const v1::MigrateRequest& req) {
  grpc::ClientContext ctx;
  auto reader = stub.Migrate(&ctx, req);
  std::vector<v1::MigrationEvent> events;
  v1::MigrationEvent e;
  while (reader->Read(&e)) events.push_back(e);
  grpc::Status st = reader->Finish();
  EXPECT_TRUE(st.ok()) << st.error_message();
  return events;
}

// The guest keeps running here: its heartbeat count grows over `seconds`, it re-checks its whole
// working set here (a full verification sweep that began on this agent: after boot, or after
// arrival by migration) and reports no corruption.
inline void ExpectGuestHealthy(v1::Agent::Stub& stub, const std::string& name, double seconds) {
  v1::VmInfo a, b;
  ASSERT_TRUE(GetVm(stub, name, &a).ok()) << name << " is not on this agent";
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  ASSERT_TRUE(GetVm(stub, name, &b).ok());
  EXPECT_GT(b.health().heartbeats(), a.health().heartbeats()) << "guest heartbeat stopped";
  EXPECT_EQ(b.health().corruptions(), 0u) << (b.health().corruption_reports_size() ? b.health().corruption_reports(0) : "");
  EXPECT_EQ(b.state(), v1::VM_POWER_STATE_RUNNING);
  auto swept = cli::WaitForFullSweep(stub, name);
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_GT(swept->health().full_sweeps(), 0u);
}

// Waits until `name` on this agent has completed `sweeps` whole verifying sweeps of its disk
// working set (WorkloadSpec.disk_working_set_bytes); false after `timeout_s`.
inline bool WaitForDiskSweeps(v1::Agent::Stub& stub, const std::string& name, uint64_t sweeps, double timeout_s = 90) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    v1::VmInfo info;
    if (GetVm(stub, name, &info).ok() && info.health().disk_sweeps() >= sweeps) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// Two more whole sweeps of the disk working set on this agent, then no corrupt block and no I/O error.
inline void ExpectDiskIntact(v1::Agent::Stub& stub, const std::string& name) {
  v1::VmInfo now;
  ASSERT_TRUE(GetVm(stub, name, &now).ok()) << name << " is not on this agent";
  EXPECT_TRUE(WaitForDiskSweeps(stub, name, now.health().disk_sweeps() + 2)) << "the guest stopped sweeping its disk";
  ASSERT_TRUE(GetVm(stub, name, &now).ok());
  EXPECT_EQ(now.state(), v1::VM_POWER_STATE_RUNNING);
  EXPECT_EQ(now.health().disk_corruptions(), 0u);
  EXPECT_EQ(now.health().corruptions(), 0u)
      << (now.health().corruption_reports_size() ? now.health().corruption_reports(0) : "");
  EXPECT_EQ(now.health().disk_io_errors(), 0u);
  EXPECT_GT(now.health().disk_blocks_verified(), 0u);
}

}  // namespace ferry::e2e
