// Storage migration, "change both host and datastore" (docs/storage_migration.md), over real
// agents and a KVM guest whose disk workload writes and verifies its blocks throughout: the guest
// finds its disk intact on the destination's datastore (both disk copy modes: the write log
// iterated, or writes mirrored synchronously; disk blocks on the data connections by default, on
// the gRPC stream with --transport grpc); a block lost from the final round is caught by the
// guest (negative control); a block outside the disk fails the migration and the guest runs on;
// a cancel, in pre-copy or while writes are mirrored, leaves the source running on its intact disk.

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/storage/vm_lock.h"
#include "tests/e2e/e2e_util.h"

namespace ferry::e2e {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

bool HasEvent(const std::vector<v1::MigrationEvent>& events, const std::string& message) {
  for (const auto& e : events) {
    if (e.message() == message) return true;
  }
  return false;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

class StorageMigrationE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!KvmUsable()) GTEST_SKIP() << "needs /dev/kvm: the guest's own disk workload is the oracle";
    // Short: a VMM's socket lives under <ds>/<vm>/vmm-<agent>/ and must fit 107 bytes.
    static int test_index = 0;
    dir_ = fs::temp_directory_path() / ("ferry-smig-" + std::to_string(getpid()) + "-" + std::to_string(++test_index));
    fs::remove_all(dir_);
    // Two local datastores, one per host, each its own storage (its own identity).
    fs::create_directories(dir_ / "ds-a");
    fs::create_directories(dir_ / "ds-b");
    std::ofstream(dir_ / "ds-a" / ".ferry-datastore-id") << "5a0c9a52-5b1e-4c2a-9d7e-0a1b2c3d4e5a\n";
    std::ofstream(dir_ / "ds-b" / ".ferry-datastore-id") << "5b0c9a52-5b1e-4c2a-9d7e-0a1b2c3d4e5b\n";
  }
  void TearDown() override {
    cluster_.reset();
    (void)cli::KillVmmProcessesUnder(dir_.string());
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string HostFile(const std::string& name, const std::string& ds, const fs::path& path) {
    fs::path p = dir_ / (name + ".yaml");
    std::ofstream(p) << "name: " << name << "\nmemory: {total: 8GiB}\n"
                     << "migration_interface: {address: 127.0.0.1, link_speed_mbps: 10000}\n"
                     << "datastores:\n  - {name: " << ds << ", path: " << path.string() << "}\n";
    return p.string();
  }
  void StartAgents(cli::LocalClusterOptions o = {}) {
    o.agents = 2;
    o.host_facts = {HostFile("host-a", "local-a", dir_ / "ds-a"), HostFile("host-b", "local-b", dir_ / "ds-b")};
    auto c = cli::LocalCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    for (int i = 0; i < 2; ++i) {
      auto s = cluster_->Stub(i);
      ASSERT_TRUE(s.ok()) << s.status();
      stubs_.push_back(std::move(*s));
    }
  }
  // A KVM guest on host-a's datastore with a 16 MiB disk; its disk workload rewrites and re-reads
  // a 2 MiB working set at 4 MiB/s (a whole verifying sweep every half second). With
  // `wait_for_a_sweep`, returns once the guest has checked its whole disk working set once.
  void CreateGuest(const std::string& name, bool wait_for_a_sweep = true) {
    grpc::ClientContext ctx;
    v1::CreateVmRequest req;
    *req.mutable_spec() = GuestSpec(name, v1::BACKEND_KIND_KVM, 64, 4, 8);
    req.set_start(false);
    req.set_datastore("local-a");
    req.add_disk_bytes(16u << 20);
    v1::VmInfo info;
    grpc::Status st = stubs_[0]->CreateVm(&ctx, req, &info);
    ASSERT_TRUE(st.ok()) << st.error_message();
    // The disk workload goes into vm.yaml (CreateVm checks it before the datastore disk exists).
    const fs::path yaml = dir_ / "ds-a" / name / "vm.yaml";
    std::ifstream in(yaml);
    std::string text((std::istreambuf_iterator<char>(in)), {}), line, out;
    std::istringstream lines(text);
    while (std::getline(lines, line)) {
      out += line + "\n";
      if (line.rfind("  tick_ms:", 0) == 0) out += "  disk_working_set: 2097152\n  disk_rate: 4\n";
    }
    std::ofstream(yaml) << out;
    grpc::ClientContext sctx;
    v1::StartVmRequest start;
    start.set_name(name);
    st = stubs_[0]->StartVm(&sctx, start, &info);
    ASSERT_TRUE(st.ok()) << st.error_message();
    if (!wait_for_a_sweep) return;
    ASSERT_TRUE(WaitForDiskSweeps(0, name, 1)) << "the guest's disk workload never completed a sweep";
  }
  bool WaitForDiskSweeps(int agent, const std::string& name, uint64_t sweeps) {
    return e2e::WaitForDiskSweeps(*stubs_[agent], name, sweeps);
  }
  v1::MigrateRequest StorageMove(const std::string& name,
                                 v1::DiskCopyMode mode = v1::DISK_COPY_MODE_ITERATE) {
    v1::MigrateRequest req = MigrateTo(*cluster_, 1, name);
    req.set_to_datastore("local-b");
    req.mutable_options()->set_disk_copy(mode);
    return req;
  }
  void ExpectDiskIntact(int agent, const std::string& name) { e2e::ExpectDiskIntact(*stubs_[agent], name); }
  void DropOneFinalDiskBlock(const std::string& name, v1::Transport transport);
  // The VMM process host-a runs `name` in, from its datastore directory (docs/vmm_process.md).
  pid_t SourceVmmPid(const std::string& name) { return VmmPid("ds-a", "host-a", name); }
  pid_t VmmPid(const std::string& datastore_dir, const std::string& agent, const std::string& name) {
    std::ifstream in(dir_ / datastore_dir / name / ("vmm-" + agent) / "vmm.pid");
    pid_t pid = -1;
    in >> pid;
    return pid;
  }

  fs::path dir_;
  std::unique_ptr<cli::LocalCluster> cluster_;
  std::vector<std::unique_ptr<v1::Agent::Stub>> stubs_;
};

TEST_F(StorageMigrationE2E, GuestDiskIsIntactOnTheDestinationDatastore) {
  StartAgents();
  CreateGuest("disk1");
  std::vector<v1::MigrationEvent> events = MigrateCollectingEvents(*stubs_[0], StorageMove("disk1"));
  ASSERT_FALSE(events.empty());
  const v1::MigrationEvent& last = events.back();
  ASSERT_EQ(last.phase(), v1::MIGRATION_PHASE_COMPLETED) << last.error();
  EXPECT_GT(last.stats().disk_blocks_sent(), 0u);
  EXPECT_GT(last.stats().disk_bytes(), 0u);
  EXPECT_GE(last.stats().disk_rounds(), 1u) << "the write log was iterated at least once";
  EXPECT_GT(last.stats().connections(), 0u);
  EXPECT_TRUE(HasEvent(events, "copying the disks on the data connections"))
      << "the disk blocks did not ride the data connections";

  // The VM runs on host-b from its new directory, whose lock host-b holds; host-a's files are gone.
  EXPECT_FALSE(fs::exists(dir_ / "ds-a" / "disk1")) << "the source's directory outlived the commit";
  EXPECT_TRUE(fs::exists(dir_ / "ds-b" / "disk1" / "vm.yaml"));
  EXPECT_EQ(fs::file_size(dir_ / "ds-b" / "disk1" / "disk0.raw"), 16u << 20);
  auto holder = VmLock::CurrentHolder((dir_ / "ds-b" / "disk1" / "vm.lock").string());
  ASSERT_TRUE(holder.ok()) << holder.status();
  ASSERT_TRUE(holder->has_value()) << "nobody holds the new directory's lock";
  EXPECT_EQ((*holder)->agent, cluster_->name(1));
  EXPECT_EQ((*holder)->pid, VmmPid("ds-b", cluster_->name(1), "disk1"))
      << "the destination's VMM process holds the new directory's lock, not its agent";
  v1::VmInfo info;
  ASSERT_TRUE(GetVm(*stubs_[1], "disk1", &info).ok());
  EXPECT_EQ(info.datastore(), "local-b");
  ExpectDiskIntact(1, "disk1");
}

// --transport grpc keeps the disks' blocks on the control stream (DiskBlocks messages).
TEST_F(StorageMigrationE2E, GuestDiskIsIntactOnTheDestinationOverTheGrpcTransport) {
  StartAgents();
  CreateGuest("disk5");
  std::vector<v1::MigrationEvent> events =
      MigrateCollectingEvents(*stubs_[0], WithTransport(StorageMove("disk5"), v1::TRANSPORT_GRPC));
  ASSERT_FALSE(events.empty());
  const v1::MigrationEvent& last = events.back();
  ASSERT_EQ(last.phase(), v1::MIGRATION_PHASE_COMPLETED) << last.error();
  EXPECT_EQ(last.stats().connections(), 0u);
  EXPECT_TRUE(HasEvent(events, "copying the disks"));
  EXPECT_FALSE(HasEvent(events, "copying the disks on the data connections"));
  EXPECT_GT(last.stats().disk_blocks_sent(), 0u);
  EXPECT_GE(last.stats().disk_rounds(), 1u);
  EXPECT_FALSE(fs::exists(dir_ / "ds-a" / "disk5"));
  ExpectDiskIntact(1, "disk5");
}

// The negative control on either transport: the test agent loses one block of the final round,
// on a data connection (the default) or as a DiskBlocks message on the gRPC stream.
void StorageMigrationE2E::DropOneFinalDiskBlock(const std::string& name, v1::Transport transport) {
  cli::LocalClusterOptions o;
  o.agent_binary = "ferry-agent-faults";  // tests/fault_agent: the fault lives outside the production agent
  o.extra_args = {{"--fault", "drop-final-disk-block"}, {}};
  StartAgents(o);
  CreateGuest(name);
  // The final round carries the blocks written since the last round's collection: at full link
  // speed the last round can take a millisecond or two and the guest (1024 blocks/s) may write
  // none in it (it happened once in a plain run). A 16 MiB/s cap makes every round last long
  // enough that the guest writes blocks the final round must carry.
  v1::MigrateRequest req = WithTransport(StorageMove(name), transport);
  req.mutable_options()->set_max_bandwidth_mibps(16);
  std::vector<v1::MigrationEvent> events = MigrateCollectingEvents(*stubs_[0], req);
  ASSERT_FALSE(events.empty());
  ASSERT_EQ(events.back().phase(), v1::MIGRATION_PHASE_COMPLETED) << events.back().error();
  ASSERT_GT(events.back().stats().disk_final_blocks(), 0u) << "no block moved in the final round: nothing to drop";
  bool caught = false;
  v1::VmInfo info;
  for (int i = 0; i < 400 && !caught; ++i) {
    ASSERT_TRUE(GetVm(*stubs_[1], name, &info).ok());
    caught = info.health().disk_corruptions() > 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(caught) << "the guest did not notice a block lost in the final round (see the source's log for "
                      << "event=test_fault_dropped_disk_block); " << info.health().disk_sweeps() << " sweeps";
  ASSERT_GT(info.health().corruption_reports_size(), 0);
  EXPECT_THAT(info.health().corruption_reports(0), HasSubstr("CORRUPTION block="));
  // The block was lost where the transport carries disk blocks.
  EXPECT_THAT(ReadFile(cluster_->log_path(0)),
              HasSubstr(transport == v1::TRANSPORT_GRPC ? "event=test_fault_dropped_disk_block via=control-stream"
                                                        : "event=test_fault_dropped_disk_block via=data-connection"));
}

TEST_F(StorageMigrationE2E, DroppingOneFinalDiskBlockIsCaughtByTheGuest) {
  DropOneFinalDiskBlock("disk2", v1::TRANSPORT_DATA);
}

TEST_F(StorageMigrationE2E, DroppingOneFinalDiskBlockOverTheGrpcTransportIsCaughtByTheGuest) {
  DropOneFinalDiskBlock("disk6", v1::TRANSPORT_GRPC);
}

// A source that sends a block past the end of the disk on a data connection: the destination
// refuses it before writing anything (DATA_PATH naming the block and the disk), discards its
// copy and its directory; the VM runs on in its source VMM with its lock, disk intact.
TEST_F(StorageMigrationE2E, ABlockOutsideTheDiskFailsTheMigrationAndTheSourceRunsOn) {
  cli::LocalClusterOptions o;
  o.agent_binary = "ferry-agent-faults";
  o.extra_args = {{"--fault", "disk-block-outside-disk"}, {}};
  StartAgents(o);
  CreateGuest("disk4");
  const pid_t vmm = SourceVmmPid("disk4");
  ASSERT_GT(vmm, 0);
  std::vector<v1::MigrationEvent> events = MigrateCollectingEvents(*stubs_[0], StorageMove("disk4"));
  ASSERT_FALSE(events.empty());
  const v1::MigrationEvent& last = events.back();
  ASSERT_EQ(last.phase(), v1::MIGRATION_PHASE_FAILED) << last.error();
  EXPECT_THAT(last.error(), HasSubstr("PEER_ERROR_CODE_DATA_PATH"));
  EXPECT_THAT(last.error(), HasSubstr("are outside disk 0 of 4096 blocks"));

  auto holder = VmLock::CurrentHolder((dir_ / "ds-a" / "disk4" / "vm.lock").string());
  ASSERT_TRUE(holder.ok()) << holder.status();
  ASSERT_TRUE(holder->has_value()) << "nobody holds the source directory's lock";
  EXPECT_EQ((*holder)->pid, vmm) << "the source's VMM does not hold its lock";
  v1::VmInfo info;
  ASSERT_TRUE(GetVm(*stubs_[0], "disk4", &info).ok());
  EXPECT_EQ(info.datastore(), "local-a");
  EXPECT_EQ(VmsAfterSettling(*stubs_[1], 30), 0) << "a VM was left on the destination";
  for (int i = 0; i < 600 && fs::exists(dir_ / "ds-b" / "disk4"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_FALSE(fs::exists(dir_ / "ds-b" / "disk4")) << "the destination's partial directory outlived the failure";
  ExpectGuestHealthy(*stubs_[0], "disk4", 1.0);
  ExpectDiskIntact(0, "disk4");
}

// Cancelled in pre-copy (a 1 MiB/s cap keeps the guest's memory in round 1 for seconds): the VM
// runs on in its source VMM from its untouched directory and lock; the destination removes the
// directory it made and runs nothing; the guest finds its memory and disk intact afterwards.
TEST_F(StorageMigrationE2E, ACancelledStorageMigrationLeavesTheSourceIntact) {
  StartAgents();
  CreateGuest("disk3", /*wait_for_a_sweep=*/false);  // cancelled before any sweep is needed
  ASSERT_TRUE(WaitForHeartbeats(*stubs_[0], "disk3", 3, 120)) << "the guest never started beating";
  const pid_t vmm = SourceVmmPid("disk3");
  ASSERT_GT(vmm, 0) << "disk3 does not run in its own VMM process";
  const uint64_t disk_bytes = fs::file_size(dir_ / "ds-a" / "disk3" / "disk0.raw");

  v1::MigrateRequest req = StorageMove("disk3");
  req.mutable_options()->set_max_bandwidth_mibps(1);
  grpc::ClientContext ctx;
  auto reader = stubs_[0]->Migrate(&ctx, req);
  v1::MigrationEvent e, last;
  bool cancelled = false, destination_dir_seen = false;
  while (reader->Read(&e)) {
    last = e;
    if (cancelled || e.phase() != v1::MIGRATION_PHASE_PRECOPY) continue;
    destination_dir_seen = fs::exists(dir_ / "ds-b" / "disk3");
    grpc::Status st = e2e::CancelMigration(*stubs_[0], e.migration_id());
    ASSERT_TRUE(st.ok()) << st.error_message();
    cancelled = true;
  }
  grpc::Status finished = reader->Finish();
  ASSERT_TRUE(cancelled) << "the migration never reported pre-copy; it ended in phase " << last.phase() << ": "
                         << last.error() << " " << finished.error_message();
  EXPECT_TRUE(destination_dir_seen) << "the destination had made no directory by pre-copy";
  EXPECT_EQ(last.phase(), v1::MIGRATION_PHASE_CANCELLED) << last.error();

  // The source: same VMM, its lock, its files; the guest beats on.
  auto holder = VmLock::CurrentHolder((dir_ / "ds-a" / "disk3" / "vm.lock").string());
  ASSERT_TRUE(holder.ok()) << holder.status();
  ASSERT_TRUE(holder->has_value()) << "nobody holds the source directory's lock";
  EXPECT_EQ((*holder)->pid, vmm) << "the source's VMM does not hold its lock";
  EXPECT_EQ(SourceVmmPid("disk3"), vmm);
  EXPECT_TRUE(fs::exists(dir_ / "ds-a" / "disk3" / "vm.yaml"));
  ASSERT_TRUE(fs::exists(dir_ / "ds-a" / "disk3" / "disk0.raw"));
  EXPECT_EQ(fs::file_size(dir_ / "ds-a" / "disk3" / "disk0.raw"), disk_bytes);
  v1::VmInfo info;
  ASSERT_TRUE(GetVm(*stubs_[0], "disk3", &info).ok());
  EXPECT_EQ(info.datastore(), "local-a");

  // The destination: its partial directory removed, no VM.
  EXPECT_EQ(VmsAfterSettling(*stubs_[1], 30), 0) << "a VM was left on the destination";
  for (int i = 0; i < 600 && fs::exists(dir_ / "ds-b" / "disk3"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_FALSE(fs::exists(dir_ / "ds-b" / "disk3")) << "the destination's partial directory outlived the cancel";

  ExpectGuestHealthy(*stubs_[0], "disk3", 1.0);
  ExpectDiskIntact(0, "disk3");
}

// Mirror mode: after the bulk copy each guest write completes only once the destination wrote
// it. The guest's disk workload finds its disk intact on the destination; the source's files stay
// until the commit (checked at every event before the last), then go.
TEST_F(StorageMigrationE2E, MirrorModeGuestDiskIsIntactAndTheSourceGoesOnlyAfterCommit) {
  StartAgents();
  CreateGuest("mirror1");
  grpc::ClientContext ctx;
  // The mirror starts once round 1 is acknowledged; on a quiet host an uncapped link can reach the
  // pause right after round 1, before the mirror took a cut (the final round then carries the
  // writes). A 16 MiB/s cap makes the rounds after round 1 last long enough for cuts.
  v1::MigrateRequest req = StorageMove("mirror1", v1::DISK_COPY_MODE_MIRROR);
  req.mutable_options()->set_max_bandwidth_mibps(16);
  auto reader = stubs_[0]->Migrate(&ctx, req);
  v1::MigrationEvent e, last;
  bool saw_mirroring = false;
  int events_before_commit = 0;
  while (reader->Read(&e)) {
    last = e;
    if (e.phase() == v1::MIGRATION_PHASE_COMPLETED) continue;
    saw_mirroring |= e.message() == "mirroring disk writes";
    ++events_before_commit;
    EXPECT_TRUE(fs::exists(dir_ / "ds-a" / "mirror1" / "disk0.raw"))
        << "the source's disk was gone before the commit, at: " << e.message();
  }
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_EQ(last.phase(), v1::MIGRATION_PHASE_COMPLETED) << last.error();
  EXPECT_GT(events_before_commit, 0);
  EXPECT_TRUE(saw_mirroring) << "no 'mirroring disk writes' progress event";
  EXPECT_EQ(last.stats().disk_copy(), v1::DISK_COPY_MODE_MIRROR);
  EXPECT_GT(last.stats().disk_mirror_cuts(), 0u) << "the guest writes 4 MiB/s: some cuts were mirrored";
  EXPECT_GT(last.stats().disk_mirror_blocks(), 0u);

  EXPECT_FALSE(fs::exists(dir_ / "ds-a" / "mirror1")) << "the source's directory outlived the commit";
  EXPECT_TRUE(fs::exists(dir_ / "ds-b" / "mirror1" / "disk0.raw"));
  v1::VmInfo info;
  ASSERT_TRUE(GetVm(*stubs_[1], "mirror1", &info).ok());
  EXPECT_EQ(info.datastore(), "local-b");
  ExpectDiskIntact(1, "mirror1");
}

// Cancelled while writes are mirrored (a 1 MiB/s cap keeps the guest's memory in round 1 for
// seconds after the disk's bulk copy): the VMM shows its held writes complete, the guest runs on
// in its source VMM on its own intact disk with its lock, and the destination removes its copy.
TEST_F(StorageMigrationE2E, ACancelWhileMirroringLeavesTheSourceRunningWithItsDiskIntact) {
  StartAgents();
  CreateGuest("mirror2");
  const pid_t vmm = SourceVmmPid("mirror2");
  ASSERT_GT(vmm, 0) << "mirror2 does not run in its own VMM process";
  v1::MigrateRequest req = StorageMove("mirror2", v1::DISK_COPY_MODE_MIRROR);
  req.mutable_options()->set_max_bandwidth_mibps(1);
  grpc::ClientContext ctx;
  auto reader = stubs_[0]->Migrate(&ctx, req);
  v1::MigrationEvent e, last;
  bool cancelled = false;
  while (reader->Read(&e)) {
    last = e;
    if (cancelled || e.message() != "mirroring disk writes") continue;
    // Let some writes go through the mirror first.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    grpc::Status st = e2e::CancelMigration(*stubs_[0], e.migration_id());
    ASSERT_TRUE(st.ok()) << st.error_message();
    cancelled = true;
  }
  grpc::Status finished = reader->Finish();
  ASSERT_TRUE(cancelled) << "the migration never reported mirroring; it ended in phase " << last.phase() << ": "
                         << last.error() << " " << finished.error_message();
  EXPECT_EQ(last.phase(), v1::MIGRATION_PHASE_CANCELLED) << last.error();

  auto holder = VmLock::CurrentHolder((dir_ / "ds-a" / "mirror2" / "vm.lock").string());
  ASSERT_TRUE(holder.ok()) << holder.status();
  ASSERT_TRUE(holder->has_value()) << "nobody holds the source directory's lock";
  EXPECT_EQ((*holder)->pid, vmm) << "the source's VMM does not hold its lock";
  EXPECT_TRUE(fs::exists(dir_ / "ds-a" / "mirror2" / "disk0.raw"));
  EXPECT_EQ(VmsAfterSettling(*stubs_[1], 30), 0) << "a VM was left on the destination";
  for (int i = 0; i < 600 && fs::exists(dir_ / "ds-b" / "mirror2"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_FALSE(fs::exists(dir_ / "ds-b" / "mirror2")) << "the destination's partial directory outlived the cancel";
  // The guest's writes complete again (no completion left held): it sweeps its disk twice more
  // and finds every block it wrote, including those mirrored before the cancel.
  v1::VmInfo before;
  ASSERT_TRUE(GetVm(*stubs_[0], "mirror2", &before).ok());
  ExpectDiskIntact(0, "mirror2");
  v1::VmInfo after;
  ASSERT_TRUE(GetVm(*stubs_[0], "mirror2", &after).ok());
  EXPECT_GT(after.health().disk_blocks_written(), before.health().disk_blocks_written());
}

}  // namespace
}  // namespace ferry::e2e
