#include "engine/vmm/vmm_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/vmm/vmm_convert.h"
#include "engine/vmm/vmm_wire.h"

namespace ferry {

absl::StatusOr<VmmConnection> VmmConnection::Connect(const std::string& socket_path, int timeout_ms) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("VMM socket path '", socket_path, "' is empty or too long"));
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return ErrnoError("socket");
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) {
      return absl::UnavailableError(absl::StrCat("no VMM at ", socket_path, ": ", std::strerror(errno)));
    }
    pollfd p{fd.get(), POLLOUT, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return absl::DeadlineExceededError(absl::StrCat("VMM at ", socket_path, " does not accept"));
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) return absl::UnavailableError(absl::StrCat("no VMM at ", socket_path, ": ", std::strerror(err)));
  }
  return VmmConnection(std::move(fd), socket_path);
}

absl::StatusOr<v1::VmmReply> VmmConnection::Call(v1::VmmRequest request, int timeout_ms, UniqueFd* received_fd,
                                                 int pass_fd) {
  std::vector<UniqueFd> fds;
  auto reply = CallWithFds(std::move(request), timeout_ms,
                           pass_fd < 0 ? std::span<const int>() : std::span<const int>(&pass_fd, 1),
                           received_fd ? &fds : nullptr);
  if (received_fd && !fds.empty()) *received_fd = std::move(fds.front());  // the rest close here
  return reply;
}

absl::StatusOr<v1::VmmReply> VmmConnection::CallWithFds(v1::VmmRequest request, int timeout_ms,
                                                        std::span<const int> pass_fds,
                                                        std::vector<UniqueFd>* received_fds) {
  if (broken_) return absl::UnavailableError(absl::StrCat("VMM connection ", socket_path_, " is broken"));
  request.set_version(kVmmProtocolVersion);
  const uint64_t seq = next_seq_++;
  request.set_seq(seq);
  absl::Status sent = WriteVmmFrame(fd_.get(), request, timeout_ms, pass_fds);
  v1::VmmReply reply;
  if (sent.ok()) sent = ReadVmmFrame(fd_.get(), reply, timeout_ms, timeout_ms, received_fds);
  if (!sent.ok()) {
    broken_ = true;  // a late reply would answer the next request
    return sent;
  }
  if (reply.seq() != seq) {
    broken_ = true;
    if (reply.code() != 0) return ReplyStatus(reply);
    return absl::DataLossError(absl::StrCat("VMM replied to request ", reply.seq(), ", expected ", seq));
  }
  RETURN_IF_ERROR(ReplyStatus(reply));
  return reply;
}

}  // namespace ferry
