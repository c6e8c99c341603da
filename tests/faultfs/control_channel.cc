#include "tests/faultfs/control_channel.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/base/status.h"

namespace ferry::faultfs {
namespace {

constexpr size_t kMaxRequestBytes = 512;

absl::StatusOr<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("control socket path must be 1 to ", sizeof(addr.sun_path) - 1, " bytes: \"", path, "\""));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

void SetTimeouts(int fd, absl::Duration timeout) {
  timeval tv = absl::ToTimeval(timeout);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Reads up to a newline (or EOF); false on error, timeout or an over-long line.
bool ReadLine(int fd, std::string* line) {
  line->clear();
  char c;
  while (line->size() <= kMaxRequestBytes) {
    ssize_t n = read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return !line->empty();
    if (c == '\n') return true;
    line->push_back(c);
  }
  return false;
}

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

std::string HandleControlRequest(FaultGate& gate, absl::string_view request) {
  request = absl::StripAsciiWhitespace(request);
  if (request == "get") {
    GateCounters c = gate.counters();
    return absl::StrCat("ok ", DescribePolicy(gate.policy()), " blocked=", c.blocked_now,
                        " failed=", c.failed_total, " delayed=", c.delayed_total);
  }
  if (absl::ConsumePrefix(&request, "set ")) {
    absl::StatusOr<FaultPolicy> policy = ParsePolicy(request);
    if (!policy.ok()) return absl::StrCat("error ", policy.status().message());
    gate.SetPolicy(*policy);
    return absl::StrCat("ok ", DescribePolicy(*policy));
  }
  return absl::StrCat("error unknown request \"", request.substr(0, 40),
                      "\": expected \"set MODE [ARG] [path=/PREFIX]\" or \"get\"");
}

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Start(const std::string& socket_path,
                                                                    FaultGate& gate) {
  ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(socket_path));
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError("control socket");
  struct stat st;
  if (lstat(socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("control path ", socket_path, " exists and is not a socket; refusing to replace it"));
    }
    unlink(socket_path.c_str());
  }
  mode_t old_mask = umask(077);  // the socket is 0600: only its owner may switch faults
  int rc = bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  umask(old_mask);
  if (rc != 0) return ErrnoError(absl::StrCat("bind control socket ", socket_path));
  if (listen(fd.get(), 8) != 0) return ErrnoError("listen on control socket");
  UniqueFd stop(eventfd(0, EFD_CLOEXEC));
  if (!stop.valid()) return ErrnoError("eventfd");
  auto server = std::unique_ptr<ControlServer>(new ControlServer(socket_path, std::move(fd), std::move(stop), gate));
  server->thread_ = std::thread([s = server.get()] { s->Serve(); });
  return server;
}

ControlServer::ControlServer(std::string path, UniqueFd listen_fd, UniqueFd stop_fd, FaultGate& gate)
    : path_(std::move(path)), listen_fd_(std::move(listen_fd)), stop_fd_(std::move(stop_fd)), gate_(gate) {}

ControlServer::~ControlServer() {
  uint64_t one = 1;
  if (write(stop_fd_.get(), &one, sizeof one) < 0) {
    // An eventfd write fails only on overflow; the thread is already told to stop then.
  }
  if (thread_.joinable()) thread_.join();
  unlink(path_.c_str());
}

void ControlServer::Serve() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    UniqueFd conn(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid()) continue;
    SetTimeouts(conn.get(), absl::Seconds(2));  // a silent client cannot hold the channel
    std::string line;
    while (ReadLine(conn.get(), &line)) {
      if (!WriteAll(conn.get(), HandleControlRequest(gate_, line) + "\n")) break;
    }
  }
}

absl::StatusOr<std::string> SendControlRequest(const std::string& socket_path, absl::string_view request,
                                               absl::Duration timeout) {
  ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(socket_path));
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError("control socket");
  SetTimeouts(fd.get(), timeout);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return absl::UnavailableError(
        absl::StrCat("ferry-faultfs control socket ", socket_path, ": ", std::strerror(errno)));
  }
  if (!WriteAll(fd.get(), absl::StrCat(request, "\n"))) return ErrnoError("send control request");
  std::string reply;
  if (!ReadLine(fd.get(), &reply)) {
    return absl::UnavailableError(absl::StrCat("no reply from ferry-faultfs on ", socket_path));
  }
  absl::string_view text = reply;
  if (absl::ConsumePrefix(&text, "error ")) return absl::InvalidArgumentError(text);
  if (!absl::StartsWith(text, "ok")) {
    return absl::InternalError(absl::StrCat("unexpected control reply \"", text.substr(0, 80), "\""));
  }
  return reply;
}

}  // namespace ferry::faultfs
