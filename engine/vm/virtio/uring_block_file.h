#pragma once
// A disk file (raw or sparse, or a block device) driven by one io_uring, used by one thread: the
// device thread queues reads, writes and flushes tagged with its own numbers and reaps their
// completions. The ring signals an eventfd on every completion, and anyone may signal the same
// eventfd (Wake), so the device thread blocks in one place for both (WaitForWork).

#include <liburing.h>
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/base/unique_fd.h"

namespace ferry {

class UringBlockFile {
 public:
  // Opens `path` read-write; `depth` bounds the requests in flight.
  static absl::StatusOr<std::unique_ptr<UringBlockFile>> Open(const std::string& path, unsigned depth);
  // The same over `fd`, `path` already open read-write (a same-host VMM upgrade's handed-over disk).
  static absl::StatusOr<std::unique_ptr<UringBlockFile>> OverDescriptor(const std::string& path, UniqueFd fd,
                                                                        unsigned depth);
  ~UringBlockFile();
  UringBlockFile(const UringBlockFile&) = delete;
  UringBlockFile& operator=(const UringBlockFile&) = delete;

  uint64_t size_bytes() const { return size_bytes_; }
  const std::string& path() const { return path_; }
  // The disk's descriptor (a same-host VMM upgrade hands it to the new VMM).
  int fd() const { return fd_.get(); }

  // Queue one operation (sent by Submit). `iov` must stay valid until its completion is reaped.
  // False when the submission queue is full.
  bool QueueRead(uint64_t tag, const iovec* iov, unsigned count, uint64_t offset);
  bool QueueWrite(uint64_t tag, const iovec* iov, unsigned count, uint64_t offset);
  // fdatasync that starts only after every operation submitted before it has completed
  // (IOSQE_IO_DRAIN), so a flush covers every write the driver saw complete before it.
  bool QueueFlush(uint64_t tag);
  absl::Status Submit();
  bool has_unsubmitted() { return io_uring_sq_ready(&ring_) > 0; }
  // Calls done(tag, result) for every completion ready now (result: bytes or -errno).
  void Reap(const std::function<void(uint64_t tag, int32_t result)>& done);

  // Synchronous, for a quiesced device (nothing in flight): fdatasync now, so another host sharing
  // the file (NFS) reads what was written here; and drop this host's cached pages of the file, so
  // a VM arriving here does not read what an earlier stay left in the cache.
  absl::Status SyncNow();
  void DropCache();

  // Blocks until a completion arrived or Wake() was called since the last return.
  void WaitForWork();
  // From any thread.
  void Wake();

 private:
  UringBlockFile(std::string path, UniqueFd fd, UniqueFd wake_fd, uint64_t size_bytes);

  std::string path_;
  UniqueFd fd_;
  UniqueFd wake_fd_;
  uint64_t size_bytes_;
  io_uring ring_{};
  bool ring_ok_ = false;
};

}  // namespace ferry
