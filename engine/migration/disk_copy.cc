#include "engine/migration/disk_copy.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"

namespace ferry {
namespace {

bool AllZero(const char* p, size_t n) {
  // A block is zero when its first byte is and it equals itself shifted by one byte.
  return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0);
}

absl::Status ReadFully(int fd, char* buf, size_t n, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = pread(fd, buf + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoError(absl::StrCat("cannot read disk ", path));
    if (r == 0) {  // past the end (cannot happen for a disk of fixed size): the rest reads as zero
      std::memset(buf + done, 0, n - done);
      return absl::OkStatus();
    }
    done += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::Status WriteFully(int fd, const char* buf, size_t n, uint64_t offset) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = pwrite(fd, buf + done, n - done, static_cast<off_t>(offset + done));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return ErrnoError("cannot write the disk");
    done += static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

uint64_t BlocksOf(uint64_t bytes) { return (bytes + kDiskBlockBytes - 1) / kDiskBlockBytes; }

}  // namespace

std::vector<FileDisk> FileDisksOf(const VmSpec& spec) {
  std::vector<FileDisk> out;
  for (const DiskSpec& d : spec.disks) {
    if (d.kind == DiskKind::kFile) out.push_back({d.path, d.size_bytes});
  }
  return out;
}

absl::StatusOr<std::unique_ptr<DiskCopySource>> DiskCopySource::Open(const VmSpec& spec, DiskWriteLog log) {
  std::vector<Disk> disks;
  for (const FileDisk& f : FileDisksOf(spec)) {
    Disk d;
    d.path = f.path;
    d.fd = UniqueFd(open(f.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!d.fd.valid()) return ErrnoError(absl::StrCat("cannot open disk ", f.path, " to copy it"));
    struct stat st {};
    if (fstat(d.fd.get(), &st) != 0) return ErrnoError(absl::StrCat("cannot stat disk ", f.path));
    d.bytes = static_cast<uint64_t>(st.st_size);
    d.pending = DirtyBitmap(BlocksOf(d.bytes));
    disks.push_back(std::move(d));
  }
  if (disks.empty()) return absl::FailedPreconditionError("the VM has no file disk to move");
  return std::unique_ptr<DiskCopySource>(new DiskCopySource(std::move(disks), std::move(log)));
}

std::vector<uint64_t> DiskCopySource::disk_bytes() const {
  std::vector<uint64_t> out;
  for (const Disk& d : disks_) out.push_back(d.bytes);
  return out;
}

absl::StatusOr<DirtyBitmap> DiskCopySource::ForgetLogAndFindData(uint32_t index) {
  Disk& d = disks_[index];
  // From here every write the device completes is logged: a block the bulk copy reads before a
  // write lands goes again in a later round.
  DirtyBitmap forget(d.pending.num_pages());
  RETURN_IF_ERROR(log_(index, forget));
  DirtyBitmap data(d.pending.num_pages());
  off_t pos = 0;
  while (static_cast<uint64_t>(pos) < d.bytes) {
    off_t start = lseek(d.fd.get(), pos, SEEK_DATA);
    if (start < 0 && errno == ENXIO) break;  // only a hole is left
    if (start < 0) {                         // no SEEK_DATA here: copy everything
      data.SetAll();
      break;
    }
    off_t end = lseek(d.fd.get(), start, SEEK_HOLE);
    if (end < 0) end = static_cast<off_t>(d.bytes);
    const uint64_t first = static_cast<uint64_t>(start) / kDiskBlockBytes;
    data.SetRange(first, BlocksOf(static_cast<uint64_t>(end)) - first);
    pos = end;
  }
  return data;
}

absl::Status DiskCopySource::SendBulk(MigrationChannel& channel, DiskCopyCounters& out) {
  for (uint32_t i = 0; i < disks_.size(); ++i) {
    ASSIGN_OR_RETURN(DirtyBitmap data, ForgetLogAndFindData(i));
    RETURN_IF_ERROR(SendBlocks(channel, i, data, /*round=*/1, /*final=*/false, out));
  }
  return absl::OkStatus();
}

absl::Status DiskCopySource::MarkBulk() {
  for (uint32_t i = 0; i < disks_.size(); ++i) {
    ASSIGN_OR_RETURN(disks_[i].pending, ForgetLogAndFindData(i));
  }
  return absl::OkStatus();
}

std::vector<RoundDisk> DiskCopySource::PendingRoundDisks() const {
  std::vector<RoundDisk> out;
  for (uint32_t i = 0; i < disks_.size(); ++i) {
    out.push_back(RoundDisk{i, disks_[i].fd.get(), disks_[i].bytes, &disks_[i].pending});
  }
  return out;
}

void DiskCopySource::ClearPending() {
  for (Disk& d : disks_) d.pending.ClearAll();
}

absl::Status DiskCopySource::CollectWrites() {
  for (uint32_t i = 0; i < disks_.size(); ++i) RETURN_IF_ERROR(log_(i, disks_[i].pending));
  return absl::OkStatus();
}

uint64_t DiskCopySource::pending_blocks() const {
  uint64_t n = 0;
  for (const Disk& d : disks_) n += d.pending.Count();
  return n;
}

absl::Status DiskCopySource::SendPending(MigrationChannel& channel, uint32_t round, bool final,
                                         DiskCopyCounters& out) {
  for (uint32_t i = 0; i < disks_.size(); ++i) {
    RETURN_IF_ERROR(SendBlocks(channel, i, disks_[i].pending, round, final, out));
    disks_[i].pending.ClearAll();
  }
  return absl::OkStatus();
}

absl::Status DiskCopySource::SendMirrorCut(MigrationChannel& channel, uint32_t index, const DirtyBitmap& blocks,
                                           uint64_t cut, DiskCopyCounters& out) {
  // Round 2: after the bulk copy, as the first iteration would be.
  return SendBlocks(channel, index, blocks, /*round=*/2, /*final=*/false, out, cut);
}

absl::Status DiskCopySource::SendBlocks(MigrationChannel& channel, uint32_t index, const DirtyBitmap& blocks,
                                        uint32_t round, bool final, DiskCopyCounters& out, uint64_t mirror_cut) {
  const Disk& d = disks_[index];
  v1::PeerMessage msg;
  uint64_t in_msg = 0;
  absl::Status st;
  auto flush = [&]() -> absl::Status {
    if (msg.disk_blocks().runs_size() == 0) return absl::OkStatus();
    if (cancel_.load()) return absl::CancelledError("migration cancelled by request");
    out.wire_bytes += msg.ByteSizeLong();
    RETURN_IF_ERROR(channel.Send(msg));
    msg.Clear();
    in_msg = 0;
    return absl::OkStatus();
  };
  auto begin = [&] {
    if (msg.has_disk_blocks()) return;
    v1::DiskBlocks* b = msg.mutable_disk_blocks();
    b->set_disk(index);
    b->set_round(round);
    b->set_final(final);
  };
  std::string buf(kDiskBlockBytes, '\0');
  blocks.ForEachRun([&](uint64_t first, uint64_t count) {
    for (uint64_t blk = first; blk < first + count && st.ok(); ++blk) {
      const uint64_t offset = blk * kDiskBlockBytes;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kDiskBlockBytes, d.bytes - offset));
      std::memset(buf.data(), 0, kDiskBlockBytes);
      st = ReadFully(d.fd.get(), buf.data(), n, offset, d.path);
      if (!st.ok()) return;
      const bool zero = AllZero(buf.data(), kDiskBlockBytes);
      begin();
      v1::DiskBlocks* b = msg.mutable_disk_blocks();
      // Extend the last run when this block continues it with the same kind.
      v1::PageRun* last = b->runs_size() > 0 ? b->mutable_runs(b->runs_size() - 1) : nullptr;
      if (last && last->zero() == zero && last->first_page() + last->count() == blk) {
        last->set_count(last->count() + 1);
      } else {
        last = b->add_runs();
        last->set_first_page(blk);
        last->set_count(1);
        last->set_zero(zero);
      }
      if (!zero) {
        last->mutable_data()->append(buf.data(), kDiskBlockBytes);
        out.data_bytes += kDiskBlockBytes;
        ++in_msg;
      } else {
        ++out.zero_blocks;
      }
      ++out.blocks;
      if (in_msg >= kMaxDiskBlocksPerMessage || b->runs_size() >= kMaxDiskRunsPerMessage) st = flush();
    }
  });
  RETURN_IF_ERROR(st);
  if (mirror_cut != 0) {
    begin();  // the cut's mark rides on its last message (an empty one when the last was full)
    msg.mutable_disk_blocks()->set_mirror_cut(mirror_cut);
    if (cancel_.load()) return absl::CancelledError("migration cancelled by request");
    out.wire_bytes += msg.ByteSizeLong();
    return channel.Send(msg);
  }
  return flush();
}

absl::StatusOr<std::unique_ptr<DiskCopyReceiver>> DiskCopyReceiver::Open(const VmSpec& spec,
                                                                         const std::vector<uint64_t>& expected_bytes) {
  std::vector<FileDisk> files = FileDisksOf(spec);
  if (files.size() != expected_bytes.size()) {
    return absl::InvalidArgumentError(absl::StrCat("the storage migration names ", expected_bytes.size(),
                                                   " disks, the VM has ", files.size(), " file disks"));
  }
  std::vector<Disk> disks;
  for (size_t i = 0; i < files.size(); ++i) {
    Disk d;
    d.fd = UniqueFd(open(files[i].path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!d.fd.valid()) return ErrnoError(absl::StrCat("cannot open disk ", files[i].path, " to receive it"));
    struct stat st {};
    if (fstat(d.fd.get(), &st) != 0) return ErrnoError(absl::StrCat("cannot stat disk ", files[i].path));
    if (static_cast<uint64_t>(st.st_size) != expected_bytes[i]) {
      return absl::InvalidArgumentError(absl::StrCat("disk ", i, " (", files[i].path, ") has ", st.st_size,
                                                     " bytes, the source's has ", expected_bytes[i]));
    }
    d.blocks = BlocksOf(expected_bytes[i]);
    d.bytes = expected_bytes[i];
    disks.push_back(std::move(d));
  }
  return std::unique_ptr<DiskCopyReceiver>(new DiskCopyReceiver(std::move(disks)));
}

absl::Status DiskCopyReceiver::Apply(const v1::DiskBlocks& b) {
  if (b.disk() >= disks_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("disk blocks for disk ", b.disk(), "; the VM has ", disks_.size()));
  }
  const Disk& d = disks_[b.disk()];
  uint64_t data_blocks = 0;
  for (const v1::PageRun& r : b.runs()) {
    if (r.count() == 0) return absl::InvalidArgumentError("a disk run of 0 blocks");
    if (r.first_page() >= d.blocks || r.count() > d.blocks - r.first_page()) {
      return absl::OutOfRangeError(absl::StrCat("disk run ", r.first_page(), "+", r.count(), " lies outside disk ",
                                                b.disk(), " (", d.blocks, " blocks)"));
    }
    const uint64_t want = r.zero() ? 0 : uint64_t{r.count()} * kDiskBlockBytes;
    if (r.data().size() != want) {
      return absl::InvalidArgumentError(absl::StrCat("disk run ", r.first_page(), "+", r.count(), " carries ",
                                                     r.data().size(), " bytes, expected ", want));
    }
    data_blocks += r.zero() ? 0 : r.count();
  }
  if (data_blocks > kMaxDiskBlocksPerMessage) {
    return absl::InvalidArgumentError(absl::StrCat("disk blocks message carries ", data_blocks, " blocks, at most ",
                                                   kMaxDiskBlocksPerMessage));
  }
  for (const v1::PageRun& r : b.runs()) {
    RETURN_IF_ERROR(WriteBlocks(b.disk(), r.first_page(), r.count(),
                                r.zero() ? nullptr : reinterpret_cast<const uint8_t*>(r.data().data())));
  }
  return absl::OkStatus();
}

absl::Status DiskCopyReceiver::WriteBlocks(uint32_t disk, uint64_t first, uint32_t count, const uint8_t* data) {
  if (disk >= disks_.size() || count == 0 || first >= disks_[disk].blocks || count > disks_[disk].blocks - first) {
    return absl::OutOfRangeError(absl::StrCat("disk blocks ", first, "+", count, " lie outside disk ", disk));
  }
  const Disk& d = disks_[disk];
  const uint64_t offset = first * kDiskBlockBytes;
  // The last block of a disk whose size is not a multiple of 4 KiB is written only up to the end.
  const uint64_t bytes = std::min<uint64_t>(uint64_t{count} * kDiskBlockBytes, d.bytes - offset);
  if (data == nullptr) {
    // A block that became zero: its old content must go (punch a hole, or write zeros).
    if (fallocate(d.fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(bytes)) != 0) {
      std::string zeros(bytes, '\0');
      RETURN_IF_ERROR(WriteFully(d.fd.get(), zeros.data(), zeros.size(), offset));
    }
  } else {
    RETURN_IF_ERROR(WriteFully(d.fd.get(), reinterpret_cast<const char*>(data), bytes, offset));
    // Start the write-back now (without waiting for it), so the copied data is on its way to
    // disk before the pause instead of left dirty in the cache for it.
    (void)sync_file_range(d.fd.get(), static_cast<off64_t>(offset), static_cast<off64_t>(bytes),
                          SYNC_FILE_RANGE_WRITE);
  }
  blocks_written_.fetch_add(count, std::memory_order_relaxed);
  return absl::OkStatus();
}

}  // namespace ferry
