#include "tests/net/netns_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/base/clock.h"
#include "engine/base/status.h"

extern char** environ;

namespace ferry {

absl::StatusOr<std::unique_ptr<ScopedNetns>> ScopedNetns::Enter() {
  UniqueFd original(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!original.valid()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open /proc/thread-self/ns/net: ", strerror(errno)));
  }
  if (::unshare(CLONE_NEWNET) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create a network namespace (needs CAP_SYS_ADMIN): unshare(CLONE_NEWNET): ",
        strerror(errno)));
  }
  return std::unique_ptr<ScopedNetns>(new ScopedNetns(std::move(original)));
}

ScopedNetns::~ScopedNetns() {
  // Staying in the test namespace would silently break every later test in this thread.
  if (::setns(original_.get(), CLONE_NEWNET) != 0) std::abort();
}

absl::Status RunIp(const std::vector<std::string>& args) {
  std::vector<std::string> full = {"ip"};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : full) argv.push_back(a.data());
  argv.push_back(nullptr);

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return ErrnoError("pipe2");
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDERR_FILENO);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
  pid_t pid;
  const int err = ::posix_spawnp(&pid, "ip", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  write_end.Reset();
  const std::string cmd = absl::StrJoin(full, " ");
  if (err != 0) return ErrnoError(absl::StrCat("spawn `", cmd, "`"), err);
  std::string output;
  char buf[512];
  ssize_t n;
  while ((n = ::read(read_end.get(), buf, sizeof(buf))) > 0) output.append(buf, n);
  int wstatus = 0;
  if (::waitpid(pid, &wstatus, 0) < 0) return ErrnoError("waitpid");
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    return absl::InternalError(
        absl::StrCat("`", cmd, "` failed (status ", wstatus, "): ", output));
  }
  return absl::OkStatus();
}

namespace {

absl::StatusOr<bool> IsRunning(int sock, const std::string& name) {
  ifreq req{};
  std::strncpy(req.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(sock, SIOCGIFFLAGS, &req) != 0) {
    return ErrnoError(absl::StrCat("SIOCGIFFLAGS ", name));
  }
  return (req.ifr_flags & IFF_RUNNING) != 0;
}

}  // namespace

absl::Status CreateVethPair(const std::string& a, const std::string& b) {
  RETURN_IF_ERROR(RunIp({"link", "add", "name", a, "type", "veth", "peer", "name", b}));
  RETURN_IF_ERROR(RunIp({"link", "set", "dev", a, "up"}));
  RETURN_IF_ERROR(RunIp({"link", "set", "dev", b, "up"}));
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return ErrnoError("socket(AF_INET)");
  const int64_t deadline = MonotonicNanos() + 3'000'000'000;
  while (true) {
    ASSIGN_OR_RETURN(bool ra, IsRunning(sock.get(), a));
    ASSIGN_OR_RETURN(bool rb, IsRunning(sock.get(), b));
    if (ra && rb) return absl::OkStatus();
    if (MonotonicNanos() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("veth ", a, "/", b, " not running after 3 s"));
    }
    ::usleep(2000);
  }
}

absl::StatusOr<RarpCapture> RarpCapture::Open(const std::string& interface) {
  UniqueFd fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(kEthertypeRarp)));
  if (!fd.valid()) return ErrnoError("capture socket(AF_PACKET)");
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(kEthertypeRarp);
  addr.sll_ifindex = static_cast<int>(::if_nametoindex(interface.c_str()));
  if (addr.sll_ifindex == 0) return ErrnoError(absl::StrCat("if_nametoindex ", interface));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoError(absl::StrCat("bind capture socket to ", interface));
  }
  return RarpCapture(std::move(fd));
}

std::vector<CapturedFrame> RarpCapture::Read(size_t count, int timeout_ms, int linger_ms) {
  std::vector<CapturedFrame> frames;
  const int64_t start = MonotonicNanos();
  int64_t deadline = start + int64_t{timeout_ms} * 1'000'000;
  bool lingering = false;
  while (true) {
    if (!lingering && frames.size() >= count) {
      lingering = true;
      deadline = MonotonicNanos() + int64_t{linger_ms} * 1'000'000;
    }
    const int64_t left_ms = (deadline - MonotonicNanos()) / 1'000'000;
    if (left_ms <= 0) break;
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left_ms)) <= 0) continue;
    uint8_t buf[2048];
    sockaddr_ll from{};
    socklen_t from_len = sizeof(from);
    const ssize_t n = ::recvfrom(fd_.get(), buf, sizeof(buf), 0,
                                 reinterpret_cast<sockaddr*>(&from), &from_len);
    const int64_t now = MonotonicNanos();
    if (n < 0) continue;
    if (from.sll_pkttype == PACKET_OUTGOING) continue;  // only what arrived from the peer
    frames.push_back(CapturedFrame{std::vector<uint8_t>(buf, buf + n), now});
  }
  return frames;
}

}  // namespace ferry
