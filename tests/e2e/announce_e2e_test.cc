// After a live migration between two real agents, the destination tells the network where the
// VM is: QEMU-schedule RARP frames for each NIC's MAC, on the host interface of that NIC's port
// group only. Everything runs in a private network namespace (two veth pairs stand in for two
// port groups' switches), so no frame reaches a real network.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <thread>

#include "engine/base/clock.h"
#include "engine/net/mac_address.h"
#include "engine/net/rarp_frame.h"
#include "tests/e2e/e2e_util.h"
#include "tests/net/netns_fixture.h"

namespace ferry::e2e {
namespace {

using cli::LocalCluster;
using cli::LocalClusterOptions;
using cli::MigrateWithProgress;

// Shared machines stall threads for tens of milliseconds; the schedule's gaps are 50..350 ms.
constexpr double kToleranceMs = 40;
// QEMU's self-announce gaps (initial 50, step 100): written out so a wrong computation fails.
constexpr std::array<double, 4> kQemuGapsMs = {50, 150, 250, 350};

const MacAddress kRedMac({0x52, 0x54, 0x00, 0x00, 0x00, 0x01});
const MacAddress kBlueMac({0x52, 0x54, 0x00, 0x00, 0x00, 0x02});

// One veth pair per port group: the agents send on the "a" end (named like the virtual switch),
// the test captures on the "b" end.
constexpr char kRedSwitch[] = "pg0a";
constexpr char kRedWire[] = "pg0b";
constexpr char kBlueSwitch[] = "pg1a";
constexpr char kBlueWire[] = "pg1b";

MacAddress SourceMac(const CapturedFrame& f) {
  std::array<uint8_t, 6> b{};
  if (f.bytes.size() >= 12) std::copy(f.bytes.begin() + 6, f.bytes.begin() + 12, b.begin());
  return MacAddress(b);
}

// Captures on an interface in the background while the migration runs, so each frame's time is
// when it arrived rather than when the test got round to reading it.
class BackgroundCapture {
 public:
  BackgroundCapture(RarpCapture capture, size_t expect)
      : capture_(std::move(capture)), thread_([this, expect] {
          // Linger after the expected count: a sixth frame, or one for another MAC, must show.
          frames_ = capture_.Read(expect, /*timeout_ms=*/12000, /*linger_ms=*/500);
        }) {}
  // Joins even when an assertion left the test early: a joinable std::thread would terminate.
  ~BackgroundCapture() {
    if (thread_.joinable()) thread_.join();
  }
  std::vector<CapturedFrame> Finish() {
    thread_.join();
    return frames_;
  }

 private:
  RarpCapture capture_;
  std::vector<CapturedFrame> frames_;
  std::thread thread_;
};

// `frames` are five byte-exact announcements of `mac`, and of no other MAC, on QEMU's schedule.
void ExpectAnnouncedOnSchedule(const std::vector<CapturedFrame>& frames, const MacAddress& mac,
                               const std::string& wire) {
  const RarpFrame want = BuildRarpFrame(mac);
  std::map<std::string, int> by_mac;
  for (const CapturedFrame& f : frames) ++by_mac[SourceMac(f).ToString()];
  std::string seen;
  for (const auto& [m, n] : by_mac) seen += " " + std::to_string(n) + " from " + m;
  ASSERT_EQ(frames.size(), 5u) << "RARP frames captured on " << wire << ":" << seen;
  std::cout << wire << ": 5 frames from " << mac.ToString() << ", gaps (ms):";
  for (size_t i = 1; i < frames.size(); ++i) {
    std::cout << " " << NanosToMillis(frames[i].monotonic_ns - frames[i - 1].monotonic_ns);
  }
  std::cout << " (QEMU: 50 150 250 350, tolerance " << kToleranceMs << ")\n";
  for (size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(SourceMac(frames[i]), mac) << wire << " frame " << i << " is from " << SourceMac(frames[i]).ToString();
    EXPECT_EQ(frames[i].bytes, std::vector<uint8_t>(want.begin(), want.end())) << wire << " frame " << i;
    if (i > 0) {
      const double gap_ms = NanosToMillis(frames[i].monotonic_ns - frames[i - 1].monotonic_ns);
      EXPECT_NEAR(gap_ms, kQemuGapsMs[i - 1], kToleranceMs) << wire << " gap before frame " << i;
    }
  }
}

bool HasWarningContaining(const v1::MigrationStats& s, const std::string& needle) {
  return std::any_of(s.warnings().begin(), s.warnings().end(),
                     [&](const std::string& w) { return w.find(needle) != std::string::npos; });
}

class AnnounceE2E : public ::testing::TestWithParam<TransportParam> {
 protected:
  void SetUp() override {
    auto ns = ScopedNetns::Enter();
    if (!ns.ok()) GTEST_SKIP() << "needs a private network namespace (root): " << ns.status().message();
    netns_ = std::move(*ns);
    // The agents listen on 127.0.0.1, which in a new namespace exists only once lo is up.
    if (absl::Status st = RunIp({"link", "set", "dev", "lo", "up"}); !st.ok()) {
      GTEST_SKIP() << "iproute2 `ip` not usable here: " << st.message();
    }
    ASSERT_EQ(CreateVethPair(kRedSwitch, kRedWire), absl::OkStatus());
    ASSERT_EQ(CreateVethPair(kBlueSwitch, kBlueWire), absl::OkStatus());
    std::string tmpl = (std::filesystem::temp_directory_path() / "ferry-announce-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override {
    // Agents first (they live in the namespace), then leave it: it is freed with its veths.
    a_.reset();
    b_.reset();
    cluster_.reset();
    netns_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  // A host file whose switches are named after host interfaces: `red_switch` carries pg-red,
  // `blue_switch` pg-blue; each switch is its own uplink. No cpu section: both hosts are this
  // machine's CPU, so the CPU precheck passes.
  std::string WriteHostFile(const std::string& name, const std::string& red_switch,
                            const std::string& blue_switch) {
    std::string path = dir_ + "/" + name + ".yaml";
    std::ofstream out(path);
    out << "name: " << name << "\n"
        << "memory: {total: 8GiB}\n"
        << "vswitches:\n"
        << "  - {name: " << red_switch << ", uplinks: [" << red_switch << "], port_groups: [pg-red]}\n"
        << "  - {name: " << blue_switch << ", uplinks: [" << blue_switch << "], port_groups: [pg-blue]}\n"
        << "migration_interface: {address: 127.0.0.1, link_speed_mbps: 10000}\n";
    return path;
  }

  void StartCluster(const std::string& destination_blue_switch) {
    LocalClusterOptions o;
    o.host_facts = {WriteHostFile("host-a", kRedSwitch, kBlueSwitch),
                    WriteHostFile("host-b", kRedSwitch, destination_blue_switch)};
    auto c = LocalCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    auto a = cluster_->Stub(0), b = cluster_->Stub(1);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    a_ = std::move(*a);
    b_ = std::move(*b);
  }

  // A synthetic-backend VM (runs everywhere) with one NIC on each port group, running on agent 0.
  void CreateTwoNicVm() {
    v1::VmSpec spec = GuestSpec("vm1", v1::BACKEND_KIND_SYNTHETIC, 64, 2, 10);
    auto* red = spec.add_nics();
    red->set_mac(kRedMac.ToString());
    red->set_port_group("pg-red");
    auto* blue = spec.add_nics();
    blue->set_mac(kBlueMac.ToString());
    blue->set_port_group("pg-blue");
    grpc::Status st = CreateVm(*a_, spec);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_TRUE(WaitForHeartbeats(*a_, "vm1", 3, 15)) << "the VM did not start on " << cluster_->name(0);
  }

  static BackgroundCapture* Capture(const std::string& wire, size_t expect,
                                    std::unique_ptr<BackgroundCapture>& out) {
    auto cap = RarpCapture::Open(wire);
    EXPECT_TRUE(cap.ok()) << cap.status();
    if (!cap.ok()) return nullptr;
    out = std::make_unique<BackgroundCapture>(std::move(*cap), expect);
    return out.get();
  }

  std::unique_ptr<ScopedNetns> netns_;
  std::string dir_;
  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<v1::Agent::Stub> a_, b_;
};

TEST_P(AnnounceE2E, MigratedVmAnnouncesEachMacFiveTimesOnlyOnItsPortGroupsInterface) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(kBlueSwitch));
  ASSERT_NO_FATAL_FAILURE(CreateTwoNicVm());
  std::unique_ptr<BackgroundCapture> red, blue;
  ASSERT_TRUE(Capture(kRedWire, 5, red) && Capture(kBlueWire, 5, blue));

  auto last = MigrateWithProgress(*a_, WithTransport(MigrateTo(*cluster_, 1, "vm1"), GetParam().kind), /*quiet=*/true);
  const auto on_red = red->Finish();
  const auto on_blue = blue->Finish();
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(last->phase(), v1::MIGRATION_PHASE_COMPLETED) << last->error();
  EXPECT_EQ(last->stats().frames_announced(), 10u);
  EXPECT_EQ(last->stats().warnings_size(), 0) << last->stats().warnings(0);

  ExpectAnnouncedOnSchedule(on_red, kRedMac, kRedWire);
  ExpectAnnouncedOnSchedule(on_blue, kBlueMac, kBlueWire);
  v1::VmInfo info;
  EXPECT_TRUE(GetVm(*b_, "vm1", &info).ok()) << "the VM is not on the destination";
}

TEST_P(AnnounceE2E, AnnounceVmSendsFiveMoreFramesPerMacOnDemand) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(kBlueSwitch));
  ASSERT_NO_FATAL_FAILURE(CreateTwoNicVm());
  {
    std::unique_ptr<BackgroundCapture> red, blue;
    ASSERT_TRUE(Capture(kRedWire, 5, red) && Capture(kBlueWire, 5, blue));
    auto last = MigrateWithProgress(*a_, WithTransport(MigrateTo(*cluster_, 1, "vm1"), GetParam().kind), true);
    EXPECT_EQ(red->Finish().size(), 5u);
    EXPECT_EQ(blue->Finish().size(), 5u);
    ASSERT_TRUE(last.ok()) << last.status();
    ASSERT_EQ(last->phase(), v1::MIGRATION_PHASE_COMPLETED) << last->error();
  }

  // What `migrate vm announce vm1` asks the VM's current host for.
  std::unique_ptr<BackgroundCapture> red, blue;
  ASSERT_TRUE(Capture(kRedWire, 5, red) && Capture(kBlueWire, 5, blue));
  grpc::ClientContext ctx;
  v1::AnnounceVmRequest req;
  req.set_name("vm1");
  v1::AnnounceVmResponse resp;
  grpc::Status st = b_->AnnounceVm(&ctx, req, &resp);
  const auto on_red = red->Finish();
  const auto on_blue = blue->Finish();
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.frames_sent(), 10u);
  EXPECT_EQ(resp.warnings_size(), 0) << resp.warnings(0);
  ExpectAnnouncedOnSchedule(on_red, kRedMac, kRedWire);
  ExpectAnnouncedOnSchedule(on_blue, kBlueMac, kBlueWire);

  // The source no longer has the VM, so it has nothing to announce.
  grpc::ClientContext ctx2;
  v1::AnnounceVmResponse gone;
  EXPECT_EQ(a_->AnnounceVm(&ctx2, req, &gone).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_P(AnnounceE2E, PortGroupWithoutInterfaceOnDestinationIsAWarningNotAFailure) {
  // On the destination pg-blue is on a switch whose interface does not exist: the precheck sees
  // a port group with an uplink and passes, the announcement cannot send on it.
  ASSERT_NO_FATAL_FAILURE(StartCluster("nosuch0"));
  ASSERT_NO_FATAL_FAILURE(CreateTwoNicVm());
  std::unique_ptr<BackgroundCapture> red;
  ASSERT_TRUE(Capture(kRedWire, 5, red));
  // Nothing is expected here, so no timing either: the socket buffers whatever arrives.
  auto blue = RarpCapture::Open(kBlueWire);
  ASSERT_TRUE(blue.ok()) << blue.status();

  auto last = MigrateWithProgress(*a_, WithTransport(MigrateTo(*cluster_, 1, "vm1"), GetParam().kind), true);
  const auto on_red = red->Finish();
  // The destination reports its announcement (all of it) before the migration completes.
  const auto on_blue = blue->Read(1, /*timeout_ms=*/300, /*linger_ms=*/0);
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(last->phase(), v1::MIGRATION_PHASE_COMPLETED) << last->error();
  EXPECT_EQ(last->stats().frames_announced(), 5u);
  EXPECT_TRUE(HasWarningContaining(last->stats(), "52:54:00:00:00:02"))
      << "no announce warning naming the blue NIC; warnings: " << last->stats().warnings_size();
  EXPECT_TRUE(HasWarningContaining(last->stats(), "nosuch0"));
  for (const auto& w : last->stats().warnings()) std::cout << "warning: " << w << "\n";
  ExpectAnnouncedOnSchedule(on_red, kRedMac, kRedWire);
  EXPECT_TRUE(on_blue.empty()) << on_blue.size() << " frames on " << kBlueWire;
  v1::VmInfo info;
  EXPECT_TRUE(GetVm(*b_, "vm1", &info).ok()) << "the VM is not on the destination";
}

// The announcement is the destination's, whichever way the pages came.
INSTANTIATE_TEST_SUITE_P(Transports, AnnounceE2E, ::testing::Values(kDataTransport, kGrpcTransport),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace ferry::e2e
