#pragma once
// The VMM opens every disk a VM names before it boots, even though the built-in guest does no
// disk I/O yet: a missing or truncated disk is an error at creation, not a surprise later.

#include "absl/status/status.h"
#include "engine/vm/vm_spec.h"

namespace ferry {

// OK when one disk is usable: a file disk exists, is a readable regular file (or block device)
// of size_bytes when given; an RDM's device exists as a readable block device and its mapping file
// is readable; a cdrom/floppy image, when given, is a readable file. Error names the disk.
absl::Status OpenDisk(const DiskSpec& disk, size_t index);

// Every disk of `vm`; the first failure, naming the disk.
absl::Status OpenDisks(const VmSpec& vm);

}  // namespace ferry
