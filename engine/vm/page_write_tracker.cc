#include "engine/vm/page_write_tracker.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
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

absl::StatusOr<UniqueFd> OpenUffd(uint8_t* base, uint64_t bytes, bool async) {
  UniqueFd fd(static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)));
  if (!fd.valid()) return ErrnoError("userfaultfd");
  uffdio_api api{};
  api.api = UFFD_API;
  // Synchronous mode asks only for what 5.19+ has: write-protect on shared memory (whose
  // never-touched pages are protected too, by PTE markers).
  api.features = async ? UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_WP_HUGETLBFS_SHMEM
                       : UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
  if (ioctl(fd.get(), UFFDIO_API, &api) != 0) {
    return ErrnoError(async ? "UFFDIO_API with WP_ASYNC" : "UFFDIO_API with WP_HUGETLBFS_SHMEM");
  }
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
  auto sync = CreateWith(Mechanism::kUffdWpSync, base, bytes);
  if (sync.ok()) return sync;
  auto soft = CreateWith(Mechanism::kSoftDirty, base, bytes);
  if (soft.ok()) return soft;
  return absl::UnavailableError(absl::StrCat("no dirty-page tracking on this kernel: ", uffd.status().message(),
                                             "; ", sync.status().message(), "; ", soft.status().message()));
}

absl::StatusOr<std::unique_ptr<PageWriteTracker>> PageWriteTracker::CreateWith(Mechanism m, uint8_t* base,
                                                                               uint64_t bytes) {
  UniqueFd pagemap(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!pagemap.valid()) return ErrnoError("open /proc/self/pagemap");
  if (m == Mechanism::kUffdWpAsync || m == Mechanism::kUffdWpSync) {
    const bool async = m == Mechanism::kUffdWpAsync;
    auto uffd = OpenUffd(base, bytes, async);
    if (!uffd.ok()) {
      return absl::UnavailableError(absl::StrCat("userfaultfd ", async ? "async" : "synchronous",
                                                 " write-protect failed (", uffd.status().message(), ")"));
    }
    std::unique_ptr<PageWriteTracker> t(new PageWriteTracker(m, base, bytes, std::move(*uffd), std::move(pagemap)));
    if (!async) {
      t->stop_fd_.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
      if (!t->stop_fd_.valid()) return ErrnoError("eventfd");
      t->fault_thread_ = std::thread([raw = t.get()] { raw->ServeWriteFaults(); });
    }
    return t;
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
      pending_(bytes / kPageSize), sync_written_(m == Mechanism::kUffdWpSync ? bytes / kPageSize : 0) {}

PageWriteTracker::~PageWriteTracker() {
  if (fault_thread_.joinable()) {
    (void)Stop();  // wakes every writer still waiting on a protected page
    uint64_t one = 1;
    (void)!write(stop_fd_.get(), &one, sizeof(one));
    fault_thread_.join();
  }
  if (mechanism_ == Mechanism::kSoftDirty) {
    std::lock_guard lock(g_soft_dirty_mu);
    SoftDirtyTrackers().erase(this);
  }
}

const char* PageWriteTracker::mechanism_name() const {
  switch (mechanism_) {
    case Mechanism::kUffdWpAsync: return "userfaultfd-wp-async";
    case Mechanism::kUffdWpSync: return "userfaultfd-wp-sync";
    case Mechanism::kSoftDirty: return "soft-dirty";
  }
  return "unknown";
}

// Protects (or unprotects, waking every writer waiting on a protected page) the whole range.
absl::Status PageWriteTracker::WriteProtect(bool on) {
  uffdio_writeprotect wp{};
  wp.range.start = reinterpret_cast<uint64_t>(base_);
  wp.range.len = bytes_;
  wp.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
  if (ioctl(uffd_.get(), UFFDIO_WRITEPROTECT, &wp) != 0) {
    return ErrnoError(on ? "UFFDIO_WRITEPROTECT" : "UFFDIO_WRITEPROTECT (clear)");
  }
  return absl::OkStatus();
}

void PageWriteTracker::ServeWriteFaults() {
  const uint64_t base = reinterpret_cast<uint64_t>(base_);
  uffd_msg msgs[64];
  for (;;) {
    pollfd fds[2] = {{uffd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[1].revents & POLLIN) return;
    ssize_t got = read(uffd_.get(), msgs, sizeof(msgs));
    if (got <= 0) continue;  // EAGAIN: another wake-up took it
    std::lock_guard lock(sync_mu_);
    for (size_t i = 0; i < static_cast<size_t>(got) / sizeof(uffd_msg); ++i) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT || !(msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)) continue;
      const uint64_t page = (msgs[i].arg.pagefault.address - base) / kPageSize;
      sync_written_.Set(page);
      uffdio_writeprotect wp{};
      wp.range.start = base + page * kPageSize;
      wp.range.len = kPageSize;
      wp.mode = 0;  // lift the protection and wake the writer
      (void)ioctl(uffd_.get(), UFFDIO_WRITEPROTECT, &wp);
    }
  }
}

absl::Status PageWriteTracker::Start() {
  if (mechanism_ == Mechanism::kUffdWpAsync) {
    RETURN_IF_ERROR(WriteProtect(true));
    protected_ = true;
    return absl::OkStatus();
  }
  if (mechanism_ == Mechanism::kUffdWpSync) {
    std::lock_guard lock(sync_mu_);
    RETURN_IF_ERROR(WriteProtect(true));
    sync_written_.ClearAll();
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
  if (mechanism_ == Mechanism::kUffdWpSync) {
    std::lock_guard lock(sync_mu_);
    if (protected_) RETURN_IF_ERROR(WriteProtect(false));
    protected_ = false;
    return absl::OkStatus();
  }
  if (mechanism_ == Mechanism::kUffdWpAsync && protected_) RETURN_IF_ERROR(WriteProtect(false));
  protected_ = false;
  return absl::OkStatus();
}

absl::Status PageWriteTracker::Collect(DirtyBitmap& out) {
  if (!protected_) return absl::FailedPreconditionError("dirty tracking is not started");
  switch (mechanism_) {
    case Mechanism::kUffdWpAsync: return CollectUffd(out);
    case Mechanism::kUffdWpSync: {
      // Re-protect first, then take the set, both under the lock the fault thread needs: a write
      // before the re-protect is in the set (its page was unprotected only because it is), one
      // after it faults and waits for the next set.
      std::lock_guard lock(sync_mu_);
      RETURN_IF_ERROR(WriteProtect(true));
      out.Or(sync_written_);
      sync_written_.ClearAll();
      return absl::OkStatus();
    }
    case Mechanism::kSoftDirty: return CollectSoftDirty(out);
  }
  return absl::InternalError("unknown tracking mechanism");
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
