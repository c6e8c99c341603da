#include "engine/vm/page_write_tracker.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/memory/page.h"

// Linux 6.7 UAPI, absent from older libc headers.
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef PAGEMAP_SCAN
struct page_region {
  uint64_t start, end, categories;
};
struct pm_scan_arg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted,
      category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#define PAGE_IS_WRITTEN (1 << 1)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

namespace ferry {
namespace {

constexpr uint64_t kSoftDirtyBit = 1ull << 55;

// clear_refs is process-wide: each soft-dirty tracker harvests its bits before anyone clears.
std::mutex g_soft_dirty_mu;
std::set<PageWriteTracker*>& SoftDirtyTrackers() {
  static auto* s = new std::set<PageWriteTracker*>;
  return *s;
}

absl::Status ClearSoftDirty() {
  UniqueFd fd(open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC));
  if (!fd.valid() || write(fd.get(), "4", 1) != 1) return ErrnoError("write /proc/self/clear_refs");
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> OpenUffd(uint8_t* base, uint64_t bytes) {
  UniqueFd fd(static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)));
  if (!fd.valid()) return ErrnoError("userfaultfd");
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
  if (ioctl(fd.get(), UFFDIO_API, &api) != 0) return ErrnoError("UFFDIO_API with WP_ASYNC");
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<uint64_t>(base);
  reg.range.len = bytes;
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  if (ioctl(fd.get(), UFFDIO_REGISTER, &reg) != 0) return ErrnoError("UFFDIO_REGISTER (write-protect)");
  return fd;
}

// Soft-dirty works when a freshly written page of a shared memfd mapping shows bit 55.
bool SoftDirtyWorks(int pagemap) {
  UniqueFd fd(memfd_create("ferry-soft-dirty-probe", MFD_CLOEXEC));
  if (!fd.valid() || ftruncate(fd.get(), kPageSize) != 0) return false;
  void* p = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return false;
  bool ok = false;
  if (ClearSoftDirty().ok()) {
    *static_cast<volatile uint8_t*>(p) = 1;
    uint64_t e = 0;
    off_t off = static_cast<off_t>(reinterpret_cast<uint64_t>(p) / kPageSize * 8);
    ok = pread(pagemap, &e, 8, off) == 8 && (e & kSoftDirtyBit);
  }
  munmap(p, kPageSize);
  return ok;
}

}  // namespace

absl::Mutex& PageWriteTracker::WriterGate() {
  static absl::Mutex* gate = new absl::Mutex;
  return *gate;
}

absl::StatusOr<std::unique_ptr<PageWriteTracker>> PageWriteTracker::Create(uint8_t* base, uint64_t bytes) {
  auto uffd = CreateWith(Mechanism::kUffdWpAsync, base, bytes);
  if (uffd.ok()) return uffd;
  auto soft = CreateWith(Mechanism::kSoftDirty, base, bytes);
  if (soft.ok()) return soft;
  return absl::UnavailableError(absl::StrCat("no dirty-page tracking on this kernel: ", uffd.status().message(),
                                             "; ", soft.status().message()));
}

absl::StatusOr<std::unique_ptr<PageWriteTracker>> PageWriteTracker::CreateWith(Mechanism m, uint8_t* base,
                                                                               uint64_t bytes) {
  UniqueFd pagemap(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!pagemap.valid()) return ErrnoError("open /proc/self/pagemap");
  if (m == Mechanism::kUffdWpAsync) {
    auto uffd = OpenUffd(base, bytes);
    if (!uffd.ok()) {
      return absl::UnavailableError(absl::StrCat("userfaultfd async write-protect failed (", uffd.status().message(), ")"));
    }
    return std::unique_ptr<PageWriteTracker>(
        new PageWriteTracker(Mechanism::kUffdWpAsync, base, bytes, std::move(*uffd), std::move(pagemap)));
  }
  if (!SoftDirtyWorks(pagemap.get())) {
    return absl::UnavailableError("soft-dirty bits do not work (CONFIG_MEM_SOFT_DIRTY?)");
  }
  auto t = std::unique_ptr<PageWriteTracker>(
      new PageWriteTracker(Mechanism::kSoftDirty, base, bytes, UniqueFd(), std::move(pagemap)));
  std::lock_guard lock(g_soft_dirty_mu);
  SoftDirtyTrackers().insert(t.get());
  return t;
}

PageWriteTracker::PageWriteTracker(Mechanism m, uint8_t* base, uint64_t bytes, UniqueFd uffd, UniqueFd pagemap)
    : mechanism_(m), base_(base), bytes_(bytes), uffd_(std::move(uffd)), pagemap_(std::move(pagemap)),
      pending_(bytes / kPageSize) {}

PageWriteTracker::~PageWriteTracker() {
  if (mechanism_ == Mechanism::kSoftDirty) {
    std::lock_guard lock(g_soft_dirty_mu);
    SoftDirtyTrackers().erase(this);
  }
}

const char* PageWriteTracker::mechanism_name() const {
  return mechanism_ == Mechanism::kUffdWpAsync ? "userfaultfd-wp-async" : "soft-dirty";
}

absl::Status PageWriteTracker::Start() {
  if (mechanism_ == Mechanism::kUffdWpAsync) {
    uffdio_writeprotect wp{};
    wp.range.start = reinterpret_cast<uint64_t>(base_);
    wp.range.len = bytes_;
    wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
    if (ioctl(uffd_.get(), UFFDIO_WRITEPROTECT, &wp) != 0) return ErrnoError("UFFDIO_WRITEPROTECT");
    protected_ = true;
    return absl::OkStatus();
  }
  std::lock_guard lock(g_soft_dirty_mu);
  absl::WriterMutexLock writers_paused(&WriterGate());
  for (PageWriteTracker* t : SoftDirtyTrackers()) {
    if (t != this) RETURN_IF_ERROR(t->HarvestSoftDirtyLocked());
  }
  RETURN_IF_ERROR(ClearSoftDirty());
  pending_.ClearAll();
  protected_ = true;
  return absl::OkStatus();
}

absl::Status PageWriteTracker::Stop() {
  if (mechanism_ == Mechanism::kUffdWpAsync && protected_) {
    uffdio_writeprotect wp{};
    wp.range.start = reinterpret_cast<uint64_t>(base_);
    wp.range.len = bytes_;
    wp.mode = 0;
    if (ioctl(uffd_.get(), UFFDIO_WRITEPROTECT, &wp) != 0) return ErrnoError("UFFDIO_WRITEPROTECT (clear)");
  }
  protected_ = false;
  return absl::OkStatus();
}

absl::Status PageWriteTracker::Collect(DirtyBitmap& out) {
  if (!protected_) return absl::FailedPreconditionError("dirty tracking is not started");
  return mechanism_ == Mechanism::kUffdWpAsync ? CollectUffd(out) : CollectSoftDirty(out);
}

absl::Status PageWriteTracker::CollectUffd(DirtyBitmap& out) {
  std::vector<page_region> regions(512);
  uint64_t start = reinterpret_cast<uint64_t>(base_), end = start + bytes_;
  while (start < end) {
    pm_scan_arg arg{};
    arg.size = sizeof(arg);
    arg.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
    arg.start = start;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(regions.data());
    arg.vec_len = regions.size();
    arg.category_mask = PAGE_IS_WRITTEN;
    arg.return_mask = PAGE_IS_WRITTEN;
    int n = ioctl(pagemap_.get(), PAGEMAP_SCAN, &arg);
    if (n < 0) return ErrnoError("PAGEMAP_SCAN");
    uint64_t base = reinterpret_cast<uint64_t>(base_);
    for (int i = 0; i < n; ++i) {
      out.SetRange((regions[i].start - base) / kPageSize, (regions[i].end - regions[i].start) / kPageSize);
    }
    if (arg.walk_end <= start) return absl::InternalError("PAGEMAP_SCAN made no progress");
    start = arg.walk_end;
  }
  return absl::OkStatus();
}

absl::Status PageWriteTracker::HarvestSoftDirtyLocked() {
  if (!protected_) return absl::OkStatus();
  constexpr uint64_t kChunk = 4096;
  std::vector<uint64_t> entries(kChunk);
  uint64_t first = reinterpret_cast<uint64_t>(base_) / kPageSize, pages = bytes_ / kPageSize;
  for (uint64_t done = 0; done < pages; done += kChunk) {
    uint64_t n = std::min(kChunk, pages - done);
    ssize_t got = pread(pagemap_.get(), entries.data(), n * 8, static_cast<off_t>((first + done) * 8));
    if (got != static_cast<ssize_t>(n * 8)) return ErrnoError("read /proc/self/pagemap");
    for (uint64_t i = 0; i < n; ++i) {
      if (entries[i] & kSoftDirtyBit) pending_.Set(done + i);
    }
  }
  return absl::OkStatus();
}

absl::Status PageWriteTracker::CollectSoftDirty(DirtyBitmap& out) {
  std::lock_guard lock(g_soft_dirty_mu);
  // No write between reading the bits and clearing them (it would be lost): writers wait.
  absl::WriterMutexLock writers_paused(&WriterGate());
  for (PageWriteTracker* t : SoftDirtyTrackers()) RETURN_IF_ERROR(t->HarvestSoftDirtyLocked());
  RETURN_IF_ERROR(ClearSoftDirty());
  out.Or(pending_);
  pending_.ClearAll();
  return absl::OkStatus();
}

}  // namespace ferry
