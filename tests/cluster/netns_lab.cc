#include "tests/cluster/netns_lab.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/base/status.h"
#include "tests/net/netns_fixture.h"

namespace ferry::cluster::testing {
namespace fs = std::filesystem;
namespace {

constexpr char kNamePrefix[] = "ferry-nt";
constexpr char kBridge[] = "ferrybr0";

// Why the switch namespace is not there ("" once it is).
std::string& Unavailable() {
  static std::string reason = "the test process did not enter its switch namespace";
  return reason;
}

// SIGKILLs every process whose network namespace is the one bound at /run/netns/NAME.
void KillProcessesIn(const std::string& name) {
  struct stat ns{};
  if (::stat(("/run/netns/" + name).c_str(), &ns) != 0) return;
  const std::string want = absl::StrCat("net:[", ns.st_ino, "]");
  std::vector<pid_t> pids;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc", ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    int pid = 0;
    if (!absl::SimpleAtoi(it->path().filename().string(), &pid) || pid <= 1 || pid == getpid()) continue;
    std::error_code lec;
    if (fs::read_symlink(it->path() / "ns" / "net", lec).string() == want) pids.push_back(pid);
  }
  for (pid_t pid : pids) ::kill(pid, SIGKILL);
}

}  // namespace

void NetnsLab::EnterSwitchNamespace() {
  if (geteuid() != 0) {
    Unavailable() = "needs root (network namespaces, veth pairs, a bridge)";
    return;
  }
  // Called from a gtest Environment, before any test made a thread (gRPC's among them): threads
  // that already exist (a sanitizer's own) stay behind, and open no sockets.
  auto entered = ScopedNetns::Enter();
  if (!entered.ok()) {
    Unavailable() = std::string(entered.status().message());
    return;
  }
  // Kept for the rest of the process: every thread started later lives in this namespace.
  [[maybe_unused]] ScopedNetns* kept = entered->release();
  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"link", "set", "lo", "up"}, {"link", "add", kBridge, "type", "bridge"},
        {"addr", "add", absl::StrCat(kGatewayIp, "/24"), "dev", kBridge}, {"link", "set", kBridge, "up"}}) {
    if (absl::Status st = RunIp(cmd); !st.ok()) {
      Unavailable() = absl::StrCat("cannot set up the switch namespace: ", st.message());
      return;
    }
  }
  Unavailable() = "";
}

absl::StatusOr<std::unique_ptr<NetnsLab>> NetnsLab::Create(int hosts) {
  if (!Unavailable().empty()) return absl::FailedPreconditionError(Unavailable());
  if (hosts < 1 || hosts > 9) return absl::InvalidArgumentError("a netns lab has 1..9 hosts");
  // Namespaces of an earlier run of these tests that was killed before its cleanup.
  std::error_code ec;
  for (auto it = fs::directory_iterator("/run/netns", ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(kNamePrefix, 0) != 0) continue;
    const std::string rest = name.substr(sizeof(kNamePrefix) - 1);
    int pid = 0;
    if (!absl::SimpleAtoi(rest.substr(0, rest.find('-')), &pid)) continue;
    if (pid == getpid() || (::kill(pid, 0) == 0 || errno != ESRCH)) continue;  // its run is still going
    KillProcessesIn(name);
    (void)RunIp({"netns", "delete", name});
  }
  std::unique_ptr<NetnsLab> lab(new NetnsLab());
  lab->hosts_ = hosts;
  lab->prefix_ = absl::StrCat(kNamePrefix, getpid(), "-h");
  if (absl::Status st = lab->Build(); !st.ok()) return st;
  if (absl::Status st = lab->StartGateway(); !st.ok()) return st;
  return lab;
}

std::string NetnsLab::netns(int i) const { return absl::StrCat(prefix_, i + 1); }
std::string NetnsLab::ip(int i) const { return absl::StrCat("10.77.0.", i + 1); }

absl::Status NetnsLab::Build() {
  for (int i = 0; i < hosts_; ++i) {
    const std::string ns = netns(i), veth = absl::StrCat("vh", i + 1);
    KillProcessesIn(ns);  // left by an earlier lab of this process
    (void)RunIp({"netns", "delete", ns});
    (void)RunIp({"link", "delete", veth});
    for (const std::vector<std::string>& cmd : {
             std::vector<std::string>{"netns", "add", ns},
             {"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
             {"link", "set", veth, "master", kBridge, "up"},
             {"-n", ns, "link", "set", "lo", "up"},
             {"-n", ns, "addr", "add", ip(i) + "/24", "dev", "eth0"},
             {"-n", ns, "link", "set", "eth0", "up"}}) {
      RETURN_IF_ERROR(RunIp(cmd));
    }
  }
  return absl::OkStatus();
}

absl::Status NetnsLab::StartGateway() {
  gateway_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (gateway_fd_ < 0) return ErrnoError("gateway socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, kGatewayIp, &a.sin_addr);
  socklen_t len = sizeof(a);
  if (::bind(gateway_fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(gateway_fd_, 64) != 0 ||
      ::getsockname(gateway_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return ErrnoError(absl::StrCat("gateway socket on ", kGatewayIp));
  }
  gateway_ = absl::StrCat(kGatewayIp, ":", ntohs(a.sin_port));
  // Accept and close at once: an isolation probe only connects.
  acceptor_ = std::thread([this] {
    while (!stop_.load()) {
      pollfd p{gateway_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) > 0) {
        int c = ::accept4(gateway_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) ::close(c);
      }
    }
  });
  return absl::OkStatus();
}

absl::Status NetnsLab::CutLink(int i) { return RunIp({"link", "set", absl::StrCat("vh", i + 1), "down"}); }
absl::Status NetnsLab::HealLink(int i) { return RunIp({"link", "set", absl::StrCat("vh", i + 1), "up"}); }

absl::Status NetnsLab::Partition(const std::vector<std::vector<int>>& groups) {
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t o = 0; o < groups.size(); ++o) {
      if (o == g) continue;
      for (int from : groups[g]) {
        for (int to : groups[o]) {
          RETURN_IF_ERROR(RunIp({"-n", netns(from), "route", "add", "blackhole", ip(to) + "/32"}));
          blackholes_.emplace_back(from, to);
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status NetnsLab::HealPartition() {
  absl::Status result;
  for (auto [from, to] : blackholes_) {
    absl::Status st = RunIp({"-n", netns(from), "route", "del", "blackhole", ip(to) + "/32"});
    if (result.ok()) result = st;
  }
  blackholes_.clear();
  return result;
}

NetnsLab::~NetnsLab() {
  stop_.store(true);
  if (acceptor_.joinable()) acceptor_.join();
  if (gateway_fd_ >= 0) ::close(gateway_fd_);
  for (int i = 0; i < hosts_; ++i) {
    KillProcessesIn(netns(i));
    (void)RunIp({"link", "delete", absl::StrCat("vh", i + 1)});  // and its peer
    (void)RunIp({"netns", "delete", netns(i)});
  }
}

}  // namespace ferry::cluster::testing
