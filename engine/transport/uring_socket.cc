#include "engine/transport/uring_socket.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/status.h"

namespace ferry {
namespace {

absl::Status UringError(const char* name, const char* what, int err) {
  if (err == EPIPE || err == ECONNRESET) {
    return absl::UnavailableError(absl::StrCat(name, ": the peer closed the connection while ", what));
  }
  return absl::UnavailableError(absl::StrCat(name, ": ", what, " failed: ", std::strerror(err)));
}

}  // namespace

bool KernelHasSendZeroCopy() {
  io_uring_probe* probe = io_uring_get_probe();
  if (probe == nullptr) return false;
  bool ok = io_uring_opcode_supported(probe, IORING_OP_SENDMSG_ZC);
  io_uring_free_probe(probe);
  return ok;
}

size_t AdvanceIovecs(std::vector<iovec>& iov, size_t first, size_t done) {
  while (done > 0 && first < iov.size()) {
    if (done >= iov[first].iov_len) {
      done -= iov[first].iov_len;
      iov[first].iov_len = 0;
      ++first;
    } else {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + done;
      iov[first].iov_len -= done;
      done = 0;
    }
  }
  while (first < iov.size() && iov[first].iov_len == 0) ++first;
  return first;
}

UringSocket::UringSocket(int fd, int64_t stall_timeout_ms, const char* name)
    : fd_(fd), stall_ms_(stall_timeout_ms), name_(name) {}

absl::StatusOr<std::unique_ptr<UringSocket>> UringSocket::Create(int fd, int64_t stall_timeout_ms, const char* name) {
  std::unique_ptr<UringSocket> s(new UringSocket(fd, stall_timeout_ms, name));
  int rc = io_uring_queue_init(8, &s->ring_, 0);
  if (rc < 0) {
    return absl::UnavailableError(absl::StrCat("io_uring_queue_init: ", std::strerror(-rc),
                                               " (io_uring disabled? see /proc/sys/kernel/io_uring_disabled)"));
  }
  s->ring_ok_ = true;
  return s;
}

UringSocket::~UringSocket() {
  if (in_flight_) {
    Shutdown();
    (void)WaitSend();
  }
  if (ring_ok_) io_uring_queue_exit(&ring_);
}

void UringSocket::Shutdown() {
  shut_.store(true);
  ::shutdown(fd_, SHUT_RDWR);
}

// Waits for one completion; with `bounded`, at most the stall timeout (then shuts the socket
// down, reaps the cancelled operation and fails).
absl::StatusOr<int> UringSocket::Complete(bool bounded, bool* notif_pending) {
  for (;;) {
    io_uring_cqe* cqe = nullptr;
    int rc;
    if (bounded && stall_ms_ > 0) {
      __kernel_timespec ts{stall_ms_ / 1000, (stall_ms_ % 1000) * 1000000};
      rc = io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
    } else {
      rc = io_uring_wait_cqe(&ring_, &cqe);
    }
    if (rc == -EINTR) continue;
    if (rc == -ETIME) {
      Shutdown();  // the operation completes now with an error; reap it
      io_uring_cqe* late = nullptr;
      while (io_uring_wait_cqe(&ring_, &late) == 0) {
        bool more = late->flags & IORING_CQE_F_MORE;
        io_uring_cqe_seen(&ring_, late);
        if (!more) break;
      }
      return absl::DeadlineExceededError(
          absl::StrFormat("%s: no progress for %.1f s (the peer stalled)", name_, stall_ms_ / 1000.0));
    }
    if (rc < 0) return absl::InternalError(absl::StrCat(name_, ": io_uring wait: ", std::strerror(-rc)));
    int res = cqe->res;
    uint32_t flags = cqe->flags;
    io_uring_cqe_seen(&ring_, cqe);
    if (flags & IORING_CQE_F_NOTIF) {
      if (notif_pending) *notif_pending = false;
      continue;  // the zero-copy release notification: keep waiting for the result
    }
    if (notif_pending && (flags & IORING_CQE_F_MORE)) *notif_pending = true;
    return res;
  }
}

void UringSocket::SubmitSend() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  std::memset(&send_msg_, 0, sizeof(send_msg_));
  send_msg_.msg_iov = send_iov_.data() + send_first_;
  send_msg_.msg_iovlen = send_iov_.size() - send_first_;
  if (zero_copy_) {
    io_uring_prep_sendmsg_zc(sqe, fd_, &send_msg_, MSG_WAITALL | MSG_NOSIGNAL);
  } else {
    io_uring_prep_sendmsg(sqe, fd_, &send_msg_, MSG_WAITALL | MSG_NOSIGNAL);
  }
  io_uring_submit(&ring_);
}

absl::Status UringSocket::StartSend(const iovec* iov, size_t iovcnt, size_t total, bool zero_copy) {
  if (in_flight_) return absl::InternalError(absl::StrCat(name_, ": a send is already in flight"));
  if (shut_.load()) return absl::CancelledError(absl::StrCat(name_, ": connection shut down"));
  send_iov_.assign(iov, iov + iovcnt);
  send_first_ = 0;
  send_left_ = total;
  zero_copy_ = zero_copy;
  if (total == 0) return absl::OkStatus();
  SubmitSend();
  in_flight_ = true;
  return absl::OkStatus();
}

absl::Status UringSocket::WaitSend() {
  while (in_flight_) {
    bool notif = false;
    absl::StatusOr<int> res = Complete(true, zero_copy_ ? &notif : nullptr);
    if (!res.ok()) {
      in_flight_ = false;
      return res.status();
    }
    // A zero-copy send's pages stay in use until the release notification.
    while (notif) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_wait_cqe(&ring_, &cqe) != 0) break;
      if (cqe->flags & IORING_CQE_F_NOTIF) notif = false;
      io_uring_cqe_seen(&ring_, cqe);
    }
    if (*res < 0) {
      in_flight_ = false;
      if (shut_.load()) return absl::CancelledError(absl::StrCat(name_, ": connection shut down"));
      return UringError(name_, "sending", -*res);
    }
    size_t done = static_cast<size_t>(*res);
    if (done >= send_left_) {
      in_flight_ = false;
      return absl::OkStatus();
    }
    if (done == 0) {
      in_flight_ = false;
      return absl::UnavailableError(absl::StrCat(name_, ": the peer stopped accepting data"));
    }
    send_left_ -= done;
    send_first_ = AdvanceIovecs(send_iov_, send_first_, done);
    SubmitSend();
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> UringSocket::RecvAll(const iovec* iov, size_t iovcnt, size_t total, bool eof_ok, bool bounded) {
  std::vector<iovec> v(iov, iov + iovcnt);
  size_t first = 0;
  size_t got = 0;
  while (got < total) {
    if (shut_.load()) return absl::CancelledError(absl::StrCat(name_, ": connection shut down"));
    msghdr msg{};
    msg.msg_iov = v.data() + first;
    msg.msg_iovlen = v.size() - first;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    // Only the first byte of a frame may wait unbounded; once a frame started, it must finish.
    // So the unbounded wait must not be MSG_WAITALL, or a peer stalling inside the first read
    // (e.g. a partial frame header) would never time out.
    const bool bound = bounded || got > 0;
    io_uring_prep_recvmsg(sqe, fd_, &msg, bound ? MSG_WAITALL : 0);
    io_uring_submit(&ring_);
    ASSIGN_OR_RETURN(int res, Complete(bound, nullptr));
    if (res < 0) {
      if (shut_.load()) return absl::CancelledError(absl::StrCat(name_, ": connection shut down"));
      return UringError(name_, "receiving", -res);
    }
    if (res == 0) {
      if (got == 0 && eof_ok) return false;
      return absl::DataLossError(absl::StrCat(name_, ": the peer closed the connection in the middle of a frame (",
                                              got, " of ", total, " bytes)"));
    }
    got += static_cast<size_t>(res);
    first = AdvanceIovecs(v, first, static_cast<size_t>(res));
  }
  return true;
}

}  // namespace ferry
