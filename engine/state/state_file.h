#pragma once
// The versioned container for saved VM state (docs/state_format.md): a fixed header (magic,
// major/minor version, payload length, xxHash64 of the payload) then a serialized v1::VmState.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/ferry/v1/state.pb.h"

namespace ferry {

inline constexpr char kStateMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'V', 'M', 'S'};
inline constexpr uint16_t kStateMajorVersion = 1;  // readers refuse any other major
inline constexpr uint16_t kStateMinorVersion = 0;  // additive changes; readers accept any minor
inline constexpr uint32_t kStateHeaderBytes = 40;
inline constexpr uint64_t kMaxStatePayloadBytes = 64ull << 20;

std::string EncodeVmState(const v1::VmState& state);
// Clear errors for: short input, wrong magic, unknown major version, payload over the cap,
// truncated payload, checksum mismatch, unparsable payload.
absl::StatusOr<v1::VmState> DecodeVmState(absl::string_view bytes);

absl::Status WriteStateFile(const std::string& path, const v1::VmState& state);
absl::StatusOr<v1::VmState> ReadStateFile(const std::string& path);

}  // namespace ferry
