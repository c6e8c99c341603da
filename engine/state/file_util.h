#pragma once
// Whole-file helpers for snapshot directories.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace ferry {

// Writes `path.tmp`, fsyncs it and renames it over `path`, so a reader never sees half a file.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);
// Reads all of `path`; a file larger than `max_bytes` is an error (before reading it).
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, uint64_t max_bytes);

}  // namespace ferry
