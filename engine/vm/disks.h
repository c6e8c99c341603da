#pragma once
// The VMM opens every disk a VM names before it boots, even though the built-in guest does no
// disk I/O yet: a missing or truncated disk is an error at creation, not a surprise later.

#include <span>

#include "absl/status/status.h"
#include "engine/base/unique_fd.h"
#include "engine/vm/vm_spec.h"

namespace ferry {

// OK when one disk is usable: a file disk exists, is a readable regular file (or block device)
// of size_bytes when given; an RDM's device exists as a readable block device and its mapping file
// is readable; a cdrom/floppy image, when given, is a readable file. Error names the disk.
absl::Status OpenDisk(const DiskSpec& disk, size_t index);

// Every disk of `vm`; the first failure, naming the disk.
absl::Status OpenDisks(const VmSpec& vm);

// A same-host VMM upgrade's new VMM runs its file disks over the descriptors the old VMM handed it,
// never reopening them by path. OK when `fds` has one descriptor per file disk of `vm` (in order)
// and each is the file its path names now (same device and inode), a regular file or block device,
// open read-write, of the disk's size when the spec gives one. Error names the disk and what differs.
absl::Status CheckHandedOverDisks(const VmSpec& vm, std::span<const UniqueFd> fds);

}  // namespace ferry
