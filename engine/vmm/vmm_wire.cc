#include "engine/vmm/vmm_wire.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"

namespace ferry {
namespace {

using SteadyClock = std::chrono::steady_clock;

int RemainingMs(SteadyClock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

// Waits for `events` on fd; timeout_ms < 0 waits forever.
absl::Status WaitFor(int fd, short events, int timeout_ms, const char* what) {
  pollfd p{fd, events, 0};
  for (;;) {
    int n = poll(&p, 1, timeout_ms);
    if (n > 0) return absl::OkStatus();  // readable/writable or hung up: the next call says which
    if (n == 0) return absl::DeadlineExceededError(absl::StrCat("VMM socket: timed out waiting to ", what));
    if (errno != EINTR) return ErrnoError("poll VMM socket");
  }
}

// Keeps every descriptor of any SCM_RIGHTS message in `keep` (closes them when it is null).
void TakeFds(msghdr& msg, std::vector<UniqueFd>* keep) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (keep) {
        keep->emplace_back(fd);
      } else {
        ::close(fd);
      }
    }
  }
}

// Reads exactly `len` bytes; the first wait may be unbounded, later ones end at `rest_deadline`.
absl::Status ReadExactly(int fd, uint8_t* buf, size_t len, int first_timeout_ms, int rest_timeout_ms,
                         std::vector<UniqueFd>* received_fds) {
  size_t got = 0;
  bool begun = false;
  SteadyClock::time_point rest_deadline{};
  while (got < len) {
    const int wait_ms = begun ? RemainingMs(rest_deadline) : first_timeout_ms;
    RETURN_IF_ERROR(WaitFor(fd, POLLIN, wait_ms, begun ? "read the rest of a message" : "read a message"));
    iovec iov{buf + got, len - got};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxVmmFdsPerFrame)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return ErrnoError("read VMM socket");
    }
    TakeFds(msg, received_fds);
    if (msg.msg_flags & MSG_CTRUNC) {
      return absl::InvalidArgumentError(absl::StrCat("VMM socket: more than ", kMaxVmmFdsPerFrame,
                                                     " descriptors beside one message"));
    }
    if (n == 0) return absl::UnavailableError("VMM socket: the other side hung up");
    if (!begun) {
      begun = true;
      rest_deadline = SteadyClock::now() + std::chrono::milliseconds(rest_timeout_ms);
    }
    got += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteVmmFrame(int fd, const google::protobuf::MessageLite& msg, int timeout_ms, int pass_fd) {
  if (pass_fd < 0) return WriteVmmFrame(fd, msg, timeout_ms, std::span<const int>());
  return WriteVmmFrame(fd, msg, timeout_ms, std::span<const int>(&pass_fd, 1));
}

absl::Status WriteVmmFrame(int fd, const google::protobuf::MessageLite& msg, int timeout_ms,
                           std::span<const int> pass_fds) {
  if (pass_fds.size() > kMaxVmmFdsPerFrame) {
    return absl::InvalidArgumentError(absl::StrCat(pass_fds.size(), " descriptors beside one VMM message exceed the limit of ",
                                                   kMaxVmmFdsPerFrame));
  }
  const size_t size = msg.ByteSizeLong();
  if (size > kMaxVmmFrameBytes) {
    return absl::InvalidArgumentError(absl::StrCat("VMM message of ", size, " bytes exceeds the limit of ",
                                                   kMaxVmmFrameBytes));
  }
  std::string frame(4 + size, '\0');
  const uint32_t len = static_cast<uint32_t>(size);
  for (int i = 0; i < 4; ++i) frame[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  if (!msg.SerializeToArray(frame.data() + 4, static_cast<int>(size))) {
    return absl::InternalError("cannot serialize VMM message");
  }
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms);
  size_t sent = 0;
  bool fd_sent = pass_fds.empty();
  while (sent < frame.size()) {
    RETURN_IF_ERROR(WaitFor(fd, POLLOUT, RemainingMs(deadline), "write a message"));
    iovec iov{frame.data() + sent, frame.size() - sent};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxVmmFdsPerFrame)];
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    if (!fd_sent) {  // the descriptors ride with the frame's first bytes
      m.msg_control = control;
      m.msg_controllen = CMSG_SPACE(sizeof(int) * pass_fds.size());
      cmsghdr* c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * pass_fds.size());
      std::memcpy(CMSG_DATA(c), pass_fds.data(), sizeof(int) * pass_fds.size());
    }
    ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno == EPIPE || errno == ECONNRESET) return absl::UnavailableError("VMM socket: the other side hung up");
      return ErrnoError("write VMM socket");
    }
    fd_sent = true;
    sent += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status ReadVmmFrame(int fd, google::protobuf::MessageLite& out, int first_byte_timeout_ms, int rest_timeout_ms,
                          UniqueFd* received_fd) {
  std::vector<UniqueFd> fds;
  absl::Status st = ReadVmmFrame(fd, out, first_byte_timeout_ms, rest_timeout_ms, received_fd ? &fds : nullptr);
  if (received_fd && !fds.empty()) *received_fd = std::move(fds.front());  // the rest close here
  return st;
}

absl::Status ReadVmmFrame(int fd, google::protobuf::MessageLite& out, int first_byte_timeout_ms, int rest_timeout_ms,
                          std::vector<UniqueFd>* received_fds) {
  uint8_t header[4];
  RETURN_IF_ERROR(ReadExactly(fd, header, 4, first_byte_timeout_ms, rest_timeout_ms, received_fds));
  const uint32_t len = header[0] | (header[1] << 8) | (header[2] << 16) | (uint32_t{header[3]} << 24);
  if (len > kMaxVmmFrameBytes) {
    return absl::InvalidArgumentError(absl::StrCat("VMM message of ", len, " bytes exceeds the limit of ",
                                                   kMaxVmmFrameBytes));
  }
  std::string body(len, '\0');
  if (len) {
    RETURN_IF_ERROR(ReadExactly(fd, reinterpret_cast<uint8_t*>(body.data()), len, rest_timeout_ms, rest_timeout_ms,
                                received_fds));
  }
  if (!out.ParseFromString(body)) return absl::InvalidArgumentError("VMM message does not parse");
  return absl::OkStatus();
}

}  // namespace ferry
