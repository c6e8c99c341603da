#pragma once
// A datastore's identity is a UUID stored in the datastore itself (kDatastoreIdFile in its
// root), so two hosts see "the same datastore" exactly when they see the same storage, whatever
// path each mounts it at.

#include <string>

#include "absl/status/statusor.h"

namespace ferry {

inline constexpr char kDatastoreIdFile[] = ".ferry-datastore-id";

// Reads the datastore's UUID, creating it on first use. Error if `dir` is not a directory or the
// id file cannot be read or created.
absl::StatusOr<std::string> DatastoreUuid(const std::string& dir);

}  // namespace ferry
