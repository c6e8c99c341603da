#pragma once
// One connected stream socket driven by its own io_uring (liburing), for one thread. At most one
// send is in flight at a time: io_uring does not order independent sends on one socket, and a
// partial send overtaken by the next one would interleave bytes. The caller overlaps its own work
// (zero detection, sealing) with the send in flight instead. Every wait is bounded by the stall
// timeout: no progress for that long fails the operation and shuts the socket down.

#include <liburing.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

namespace ferry {

// Whether this kernel's io_uring has IORING_OP_SENDMSG_ZC (Linux 6.1+).
bool KernelHasSendZeroCopy();

class UringSocket {
 public:
  // `fd` stays owned by the caller and must outlive this object.
  static absl::StatusOr<std::unique_ptr<UringSocket>> Create(int fd, int64_t stall_timeout_ms, const char* name);
  ~UringSocket();
  UringSocket(const UringSocket&) = delete;
  UringSocket& operator=(const UringSocket&) = delete;

  // Hands `iov` (total bytes) to the kernel; `iov` and the memory it points to stay valid until
  // WaitSend returns. With `zero_copy` the kernel sends from the pages themselves
  // (IORING_OP_SENDMSG_ZC) and WaitSend also waits for its release notification.
  absl::Status StartSend(const iovec* iov, size_t iovcnt, size_t total, bool zero_copy);
  // Waits for the send in flight (OK when there is none); resubmits what a short send left.
  absl::Status WaitSend();
  bool send_in_flight() const { return in_flight_; }

  // Receives exactly `total` bytes into `iov`. Returns false when the stream ended cleanly before
  // the first byte and `eof_ok`. `bounded`: a wait longer than the stall timeout fails (a frame
  // boundary waits as long as the control stream keeps the migration alive).
  absl::StatusOr<bool> RecvAll(const iovec* iov, size_t iovcnt, size_t total, bool eof_ok, bool bounded);

  // From any thread: makes the pending and every later operation fail.
  void Shutdown();

 private:
  UringSocket(int fd, int64_t stall_timeout_ms, const char* name);
  absl::StatusOr<int> Complete(bool bounded, bool* notif_pending);
  void SubmitSend();

  int fd_;
  int64_t stall_ms_;
  const char* name_;
  io_uring ring_{};
  bool ring_ok_ = false;
  bool in_flight_ = false;
  bool zero_copy_ = false;
  std::atomic<bool> shut_{false};
  // The send in flight: its iovecs, advanced past what the kernel already took.
  std::vector<iovec> send_iov_;
  size_t send_first_ = 0;
  size_t send_left_ = 0;
  msghdr send_msg_{};
};

// Advances iov[first..] by `done` bytes; returns the new first index.
size_t AdvanceIovecs(std::vector<iovec>& iov, size_t first, size_t done);

}  // namespace ferry
