#include "engine/state/state_file.h"

#include <xxhash.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/status.h"
#include "engine/state/file_util.h"

namespace ferry {
namespace {

// Little-endian fixed-width fields, so a file moves between hosts.
void PutLe(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetLe(absl::string_view in, size_t offset, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<uint8_t>(in[offset + i])} << (8 * i);
  return v;
}

}  // namespace

std::string EncodeVmState(const v1::VmState& state) {
  std::string payload = state.SerializeAsString();
  std::string out(kStateMagic, sizeof(kStateMagic));
  PutLe(out, kStateMajorVersion, 2);
  PutLe(out, kStateMinorVersion, 2);
  PutLe(out, kStateHeaderBytes, 4);
  PutLe(out, payload.size(), 8);
  PutLe(out, XXH64(payload.data(), payload.size(), 0), 8);
  PutLe(out, 0, 8);  // reserved
  out += payload;
  return out;
}

absl::StatusOr<v1::VmState> DecodeVmState(absl::string_view bytes) {
  if (bytes.size() < kStateHeaderBytes) {
    return absl::DataLossError(absl::StrCat("saved state is truncated: ", bytes.size(),
                                            " bytes, shorter than the ", kStateHeaderBytes, "-byte header"));
  }
  if (std::memcmp(bytes.data(), kStateMagic, sizeof(kStateMagic)) != 0) {
    return absl::InvalidArgumentError("not a Ferry saved state: bad magic (expected \"FERRYVMS\")");
  }
  uint64_t major = GetLe(bytes, 8, 2), minor = GetLe(bytes, 10, 2);
  if (major != kStateMajorVersion) {
    return absl::FailedPreconditionError(absl::StrCat("saved state has format version ", major, ".", minor,
                                                      "; this Ferry reads major version ", kStateMajorVersion,
                                                      " only"));
  }
  uint64_t header = GetLe(bytes, 12, 4);
  uint64_t length = GetLe(bytes, 16, 8);
  uint64_t checksum = GetLe(bytes, 24, 8);
  if (header < kStateHeaderBytes || header > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("saved state header size ", header, " is invalid"));
  }
  if (length > kMaxStatePayloadBytes) {
    return absl::InvalidArgumentError(absl::StrCat("saved state payload of ", length, " bytes exceeds the cap of ",
                                                   kMaxStatePayloadBytes, " bytes"));
  }
  if (bytes.size() < header + length) {
    return absl::DataLossError(absl::StrCat("saved state is truncated: header promises ", length,
                                            " payload bytes, file has ", bytes.size() - std::min<uint64_t>(bytes.size(), header)));
  }
  if (bytes.size() > header + length) {
    return absl::DataLossError(absl::StrCat("saved state has ", bytes.size() - header - length,
                                            " unexpected bytes after the payload"));
  }
  absl::string_view payload = bytes.substr(header, length);
  uint64_t actual = XXH64(payload.data(), payload.size(), 0);
  if (actual != checksum) {
    return absl::DataLossError(absl::StrFormat("saved state is corrupted: checksum %016x, header says %016x",
                                               actual, checksum));
  }
  v1::VmState state;
  if (!state.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::DataLossError("saved state payload does not parse as ferry.v1.VmState");
  }
  return state;
}

absl::Status WriteStateFile(const std::string& path, const v1::VmState& state) {
  return WriteFileAtomically(path, EncodeVmState(state));
}

absl::StatusOr<v1::VmState> ReadStateFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadSmallFile(path, kStateHeaderBytes + kMaxStatePayloadBytes));
  auto state = DecodeVmState(bytes);
  if (!state.ok()) return absl::Status(state.status().code(), absl::StrCat(path, ": ", state.status().message()));
  return state;
}

}  // namespace ferry
