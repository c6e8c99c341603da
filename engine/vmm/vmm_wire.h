#pragma once
// Framing of the agent <-> VMM socket (docs/vmm_process.md): a 4-byte little-endian length, then
// one serialized VmmRequest or VmmReply. A file descriptor may ride beside a frame (SCM_RIGHTS).

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "engine/base/unique_fd.h"
#include "google/protobuf/message_lite.h"

namespace ferry {

inline constexpr uint32_t kVmmProtocolVersion = 1;
// Larger than any VmState plus the dirty bitmap of a 1 TiB guest (32 MiB); anything larger is
// refused before a byte of it is allocated.
inline constexpr uint32_t kMaxVmmFrameBytes = 64u << 20;
// Once a frame began, its rest must arrive within this (the VMM's bound on a stalled peer).
inline constexpr int kVmmFrameRestTimeoutMs = 10'000;

// Descriptors beside one frame at most: the memfd, every file disk (FERRY_VIRTIO_MAX_DISKS) and the
// lock, with room to spare. More arriving is an error, never a silent loss.
inline constexpr size_t kMaxVmmFdsPerFrame = 24;

// Writes `msg` as one frame, with `pass_fds` attached (in order). Bounded by `timeout_ms`.
absl::Status WriteVmmFrame(int fd, const google::protobuf::MessageLite& msg, int timeout_ms,
                           std::span<const int> pass_fds);
// The same with one descriptor, `pass_fd`, when >= 0.
absl::Status WriteVmmFrame(int fd, const google::protobuf::MessageLite& msg, int timeout_ms, int pass_fd = -1);

// Reads one frame into `out`. Waits up to `first_byte_timeout_ms` for it to begin (-1: forever),
// then up to `rest_timeout_ms` for the rest. A descriptor that came with it lands in `received_fd`
// (closed if `received_fd` is null). Errors: DeadlineExceeded (timeout), Unavailable (peer hung
// up), InvalidArgument (oversized or unparsable frame).
absl::Status ReadVmmFrame(int fd, google::protobuf::MessageLite& out, int first_byte_timeout_ms, int rest_timeout_ms,
                          UniqueFd* received_fd = nullptr);
// The same, keeping every descriptor that came with it (in order) in `received_fds`.
absl::Status ReadVmmFrame(int fd, google::protobuf::MessageLite& out, int first_byte_timeout_ms, int rest_timeout_ms,
                          std::vector<UniqueFd>* received_fds);

}  // namespace ferry
