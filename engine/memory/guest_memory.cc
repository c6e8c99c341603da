#include "engine/memory/guest_memory.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <sys/sysinfo.h>

#include "absl/strings/str_cat.h"
#include "engine/memory/prefault.h"
#include "engine/base/status.h"

namespace ferry {

absl::StatusOr<std::unique_ptr<GuestMemory>> GuestMemory::Create(uint64_t bytes) {
  if (bytes == 0 || bytes % kPageSize != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("guest memory size ", bytes, " must be a positive multiple of 4096"));
  }
  struct sysinfo si {};
  if (sysinfo(&si) == 0) {
    uint64_t host = uint64_t{si.totalram} * si.mem_unit;
    if (bytes > host) {
      return absl::ResourceExhaustedError(absl::StrCat("guest memory of ", bytes >> 20,
                                                       " MiB is larger than this host's ", host >> 20,
                                                       " MiB of physical memory"));
    }
  }
  UniqueFd fd(memfd_create("ferry-guest-ram", MFD_CLOEXEC));
  if (!fd.valid()) return ErrnoError("memfd_create");
  if (ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) return ErrnoError("ftruncate guest memory");
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd.get(), 0);
  if (p == MAP_FAILED) return ErrnoError("mmap guest memory");
  madvise(p, bytes, MADV_DONTDUMP);
  return std::unique_ptr<GuestMemory>(new GuestMemory(std::move(fd), static_cast<uint8_t*>(p), bytes));
}

absl::StatusOr<std::unique_ptr<GuestMemory>> GuestMemory::WrapExisting(UniqueFd fd, uint64_t bytes) {
  if (!fd.valid()) return absl::InvalidArgumentError("no guest memory file descriptor to map");
  if (bytes == 0 || bytes % kPageSize != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("guest memory size ", bytes, " must be a positive multiple of 4096"));
  }
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return ErrnoError("fstat guest memory");
  if (static_cast<uint64_t>(st.st_size) != bytes) {
    return absl::InvalidArgumentError(absl::StrCat("guest memory file is ", st.st_size, " bytes, expected ", bytes));
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd.get(), 0);
  if (p == MAP_FAILED) return ErrnoError("mmap guest memory");
  madvise(p, bytes, MADV_DONTDUMP);
  return std::unique_ptr<GuestMemory>(new GuestMemory(std::move(fd), static_cast<uint8_t*>(p), bytes));
}

void GuestMemory::MarkPopulatedPages(DirtyBitmap& out) const {
  off_t pos = 0;
  const off_t end = static_cast<off_t>(size_);
  while (pos < end) {
    off_t data = lseek(fd_.get(), pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) return;  // only holes from here on
      out.SetAll();                // no hole information: every page may hold data
      return;
    }
    off_t hole = lseek(fd_.get(), data, SEEK_HOLE);
    if (hole < 0) hole = end;
    out.SetRange(static_cast<uint64_t>(data) >> kPageShift,
                 PagesFor(static_cast<uint64_t>(hole)) - (static_cast<uint64_t>(data) >> kPageShift));
    pos = hole;
  }
}

absl::Status GuestMemory::WriteThroughFile(uint64_t first_page, const uint8_t* src, uint64_t bytes) {
  if (first_page > num_pages() || bytes % kPageSize != 0 || (bytes >> kPageShift) > num_pages() - first_page) {
    return absl::OutOfRangeError(absl::StrCat("write of ", bytes, " bytes at page ", first_page,
                                              " lies outside guest memory (", num_pages(), " pages)"));
  }
  uint64_t off = first_page << kPageShift;
  while (bytes > 0) {
    ssize_t n = pwrite(fd_.get(), src, bytes, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError(absl::StrCat("writing guest memory at page ", off >> kPageShift), n < 0 ? errno : EIO);
    src += n;
    off += static_cast<uint64_t>(n);
    bytes -= static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

GuestMemory::~GuestMemory() { munmap(base_, size_); }

void GuestMemory::Prefault(const std::atomic<bool>* stop) {
  constexpr uint64_t kStep = 16ull << 20;
  for (uint64_t off = 0; off < size_; off += kStep) {
    if (stop && stop->load(std::memory_order_relaxed)) return;
    uint64_t len = std::min(kStep, size_ - off);
    PrefaultRange(base_ + off, len);  // leaves the content as it is, even while others write
  }
}

}  // namespace ferry
