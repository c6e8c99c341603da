#include "engine/vm/virtio/uring_block_file.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"

namespace ferry {

UringBlockFile::UringBlockFile(std::string path, UniqueFd fd, UniqueFd wake_fd, uint64_t size_bytes)
    : path_(std::move(path)), fd_(std::move(fd)), wake_fd_(std::move(wake_fd)), size_bytes_(size_bytes) {}

UringBlockFile::~UringBlockFile() {
  if (ring_ok_) io_uring_queue_exit(&ring_);
}

absl::StatusOr<std::unique_ptr<UringBlockFile>> UringBlockFile::Open(const std::string& path, unsigned depth) {
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError(absl::StrCat("disk ", path, ": open read-write"));
  return OverDescriptor(path, std::move(fd), depth);
}

absl::StatusOr<std::unique_ptr<UringBlockFile>> UringBlockFile::OverDescriptor(const std::string& path, UniqueFd fd,
                                                                               unsigned depth) {
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return ErrnoError(absl::StrCat("disk ", path, ": stat"));
  uint64_t size = 0;
  if (S_ISBLK(st.st_mode)) {
    if (ioctl(fd.get(), BLKGETSIZE64, &size) != 0) return ErrnoError(absl::StrCat("disk ", path, ": BLKGETSIZE64"));
  } else if (S_ISREG(st.st_mode)) {
    size = static_cast<uint64_t>(st.st_size);
  } else {
    return absl::FailedPreconditionError(absl::StrCat("disk ", path, ": not a regular file or block device"));
  }
  UniqueFd wake(eventfd(0, EFD_CLOEXEC));
  if (!wake.valid()) return ErrnoError("disk: eventfd");
  std::unique_ptr<UringBlockFile> file(new UringBlockFile(path, std::move(fd), std::move(wake), size));
  int r = io_uring_queue_init(depth, &file->ring_, 0);
  if (r < 0) return ErrnoError(absl::StrCat("disk ", path, ": io_uring_queue_init"), -r);
  file->ring_ok_ = true;
  r = io_uring_register_eventfd(&file->ring_, file->wake_fd_.get());
  if (r < 0) return ErrnoError(absl::StrCat("disk ", path, ": io_uring_register_eventfd"), -r);
  return file;
}

bool UringBlockFile::QueueRead(uint64_t tag, const iovec* iov, unsigned count, uint64_t offset) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (!sqe) return false;
  io_uring_prep_readv(sqe, fd_.get(), iov, count, offset);
  io_uring_sqe_set_data64(sqe, tag);
  return true;
}

bool UringBlockFile::QueueWrite(uint64_t tag, const iovec* iov, unsigned count, uint64_t offset) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (!sqe) return false;
  io_uring_prep_writev(sqe, fd_.get(), iov, count, offset);
  io_uring_sqe_set_data64(sqe, tag);
  return true;
}

bool UringBlockFile::QueueFlush(uint64_t tag) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (!sqe) return false;
  io_uring_prep_fsync(sqe, fd_.get(), IORING_FSYNC_DATASYNC);
  sqe->flags |= IOSQE_IO_DRAIN;
  io_uring_sqe_set_data64(sqe, tag);
  return true;
}

absl::Status UringBlockFile::Submit() {
  // EAGAIN/EBUSY are transient (kernel memory, a full completion queue); a few retries, not forever.
  int r = 0;
  for (int attempt = 0; attempt < 100; ++attempt) {
    r = io_uring_submit(&ring_);
    if (r >= 0) return absl::OkStatus();
    if (r != -EINTR && r != -EAGAIN && r != -EBUSY) break;
  }
  return ErrnoError(absl::StrCat("disk ", path_, ": io_uring_submit"), -r);
}

void UringBlockFile::Reap(const std::function<void(uint64_t, int32_t)>& done) {
  io_uring_cqe* cqe = nullptr;
  while (io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe) {
    uint64_t tag = io_uring_cqe_get_data64(cqe);
    int32_t res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    done(tag, res);
  }
}

absl::Status UringBlockFile::SyncNow() {
  if (fdatasync(fd_.get()) != 0) return ErrnoError(absl::StrCat("disk ", path_, ": fdatasync"));
  return absl::OkStatus();
}

void UringBlockFile::DropCache() { (void)posix_fadvise(fd_.get(), 0, 0, POSIX_FADV_DONTNEED); }

void UringBlockFile::WaitForWork() {
  uint64_t count;
  while (read(wake_fd_.get(), &count, sizeof count) < 0 && errno == EINTR) {
  }
}

void UringBlockFile::Wake() {
  uint64_t one = 1;
  (void)!write(wake_fd_.get(), &one, sizeof one);
}

}  // namespace ferry
