#pragma once
// The FUSE operations of ferry-faultfs: each one asks the FaultGate first, then does the same
// operation on the backing directory (openat() and friends relative to its fd).

#define FUSE_USE_VERSION 312
#include <fuse3/fuse.h>

#include "tests/faultfs/fault_gate.h"

namespace ferry::faultfs {

// What the operations share; handed to fuse_new() as its private data.
struct PassthroughContext {
  int backing_fd = -1;  // O_PATH|O_DIRECTORY fd of the backing directory
  FaultGate* gate = nullptr;
  fuse_session* session = nullptr;  // set once the file system is created; read by blocked operations
};

// `shared_locks`: byte-range locks become OFD locks on the backing files (seen by other mounts of
// the same directory, released asynchronously after the last close); otherwise the kernel keeps
// them per mount, with exact OFD/POSIX semantics (docs/faultfs.md "Locks").
fuse_operations PassthroughOperations(bool shared_locks);

}  // namespace ferry::faultfs
