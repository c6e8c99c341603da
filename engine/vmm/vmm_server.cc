#include "engine/vmm/vmm_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/vmm/vmm_convert.h"
#include "engine/vmm/vmm_wire.h"

namespace ferry {
namespace {

constexpr int kTickMs = 250;  // how often an idle VMM looks at `terminate`
constexpr int kReplyTimeoutMs = 10'000;

absl::StatusOr<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("VMM socket path '", path, "' is empty or longer than ",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// Only this user (or root) may drive the VM.
bool PeerAllowed(int conn) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  return cred.uid == 0 || cred.uid == getuid();
}

}  // namespace

absl::StatusOr<std::unique_ptr<VmmServer>> VmmServer::Listen(VmmServerOptions options) {
  const std::string path = options.take_over ? options.socket_path + kTakeOverSocketSuffix : options.socket_path;
  ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(path));
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError("socket");
  if (access(path.c_str(), F_OK) == 0) {
    UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      return absl::AlreadyExistsError(absl::StrCat("another VMM already serves ", path));
    }
    unlink(path.c_str());  // stale: its VMM is gone
  }
  const mode_t old_mask = umask(0077);  // the socket is this user's only
  const int bound = bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  umask(old_mask);
  if (bound != 0) return ErrnoError(absl::StrCat("bind ", path));
  if (listen(fd.get(), 4) != 0) return ErrnoError("listen");
  auto server = std::unique_ptr<VmmServer>(new VmmServer(std::move(options), std::move(fd), path));
  server->dispatcher_.set_claim_socket([raw = server.get()] { return raw->ClaimSocket(); });
  if (!server->options_.take_over && !server->options_.pid_file.empty()) {
    std::ofstream(server->options_.pid_file) << getpid() << "\n";
    server->pid_file_written_ = true;
  }
  return server;
}

VmmServer::~VmmServer() {
  if (dispatcher_.retired()) return;  // the socket path and pid file are the successor's
  unlink(bound_path_.c_str());
  if (pid_file_written_) unlink(options_.pid_file.c_str());
}

absl::Status VmmServer::ClaimSocket() {
  if (!options_.take_over) return absl::FailedPreconditionError("claim_socket: this VMM was not started to take over");
  if (bound_path_ == options_.socket_path) return absl::OkStatus();
  if (!dispatcher_.has_vm()) return absl::FailedPreconditionError("claim_socket: this VMM has no VM yet");
  // rename() replaces the old VMM's socket atomically: a connect finds one VMM or the other.
  if (rename(bound_path_.c_str(), options_.socket_path.c_str()) != 0) {
    return ErrnoError(absl::StrCat("rename ", bound_path_, " to ", options_.socket_path));
  }
  bound_path_ = options_.socket_path;
  if (!options_.pid_file.empty()) {
    const std::string tmp = options_.pid_file + kTakeOverSocketSuffix;
    std::ofstream(tmp) << getpid() << "\n";
    if (rename(tmp.c_str(), options_.pid_file.c_str()) != 0) return ErrnoError(absl::StrCat("write ", options_.pid_file));
    pid_file_written_ = true;
  }
  spdlog::info("event=vmm_socket_claimed socket={} pid={}", bound_path_, getpid());
  return absl::OkStatus();
}

std::string VmmServer::Run(const std::atomic<bool>& terminate) {
  const auto create_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.create_timeout_ms);
  for (;;) {
    if (terminate.load()) {
      dispatcher_.StopVm();
      return "signal";
    }
    if (dispatcher_.stop_requested()) return "stop requested";
    if (!dispatcher_.has_vm() && std::chrono::steady_clock::now() > create_deadline) return "no create in time";
    pollfd p{listener_.get(), POLLIN, 0};
    if (poll(&p, 1, kTickMs) <= 0) continue;
    UniqueFd conn(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid()) continue;
    if (!PeerAllowed(conn.get())) {
      spdlog::warn("event=vmm_peer_refused reason=\"another user\"");
      continue;
    }
    spdlog::info("event=vmm_agent_connected");
    Serve(conn.get(), terminate);
    spdlog::info("event=vmm_agent_disconnected");
    dispatcher_.OnAgentGone();
    if (dispatcher_.has_vm() && !dispatcher_.ever_started() && !dispatcher_.stop_requested()) {
      dispatcher_.StopVm();
      return "agent left a VM that never started";
    }
  }
}

void VmmServer::Serve(int conn, const std::atomic<bool>& terminate) {
  while (!terminate.load() && !dispatcher_.stop_requested()) {
    pollfd p{conn, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, kTickMs) <= 0) continue;
    v1::VmmRequest request;
    std::vector<UniqueFd> received_fds;
    absl::Status read = ReadVmmFrame(conn, request, 0, kVmmFrameRestTimeoutMs, &received_fds);
    if (!read.ok()) {
      if (read.code() == absl::StatusCode::kInvalidArgument) {
        // Tell the agent why, then drop a connection whose framing cannot be trusted any more.
        v1::VmmReply reply;
        reply.set_version(kVmmProtocolVersion);
        SetReplyStatus(read, reply);
        (void)WriteVmmFrame(conn, reply, 1000);
        spdlog::warn("event=vmm_bad_request error=\"{}\"", std::string(read.message()));
      }
      return;
    }
    std::vector<int> pass_fds;
    v1::VmmReply reply = dispatcher_.Handle(request, &pass_fds, std::move(received_fds));
    if (absl::Status st = WriteVmmFrame(conn, reply, kReplyTimeoutMs, std::span<const int>(pass_fds)); !st.ok()) {
      spdlog::warn("event=vmm_reply_failed error=\"{}\"", std::string(st.message()));
      return;
    }
  }
}

}  // namespace ferry
