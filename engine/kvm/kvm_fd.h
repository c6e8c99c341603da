#pragma once
// The KVM ioctl convention in one place: an ioctl on an fd whose failure becomes a Status naming
// the ioctl (KVM's errors are only useful with the request that produced them).

#include <sys/ioctl.h>

#include <cerrno>

#include "absl/status/status.h"
#include "engine/base/status.h"

namespace ferry {

// Returns the ioctl's (non-negative) result, retrying on EINTR, or an error "NAME: strerror".
template <typename Arg>
absl::StatusOr<int> KvmIoctl(int fd, unsigned long request, Arg arg, const char* name) {
  for (;;) {
    int r = ::ioctl(fd, request, arg);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    return ErrnoError(name);
  }
}

template <typename Arg>
absl::Status KvmIoctlStatus(int fd, unsigned long request, Arg arg, const char* name) {
  return KvmIoctl(fd, request, arg, name).status();
}

}  // namespace ferry
