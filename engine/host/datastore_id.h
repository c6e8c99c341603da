#pragma once
// A datastore's identity is a UUID stored in the datastore itself (kDatastoreIdFile in its
// root), so two hosts see "the same datastore" exactly when they see the same storage, whatever
// path each mounts it at. Only the agent of a host that mounts it writes that id; anything that
// merely reads host facts (the offline precheck) never writes to a datastore.

#include <string>

#include "absl/status/statusor.h"

namespace ferry {

inline constexpr char kDatastoreIdFile[] = ".ferry-datastore-id";

enum class DatastoreIdPolicy {
  kReadOnly,         // read the id if there is one; never write
  kCreateIfMissing,  // the agent's: create the id on first use where the datastore is writable
};

struct DatastoreIdentity {
  std::string uuid;        // "" = no id yet: the datastore cannot be told apart from another
  bool read_only = false;  // mounted read-only here (no id can be created from this host)
};

// Error if `dir` is not a directory or its id file is unreadable or malformed; a missing id is not
// an error (uuid "").
absl::StatusOr<DatastoreIdentity> IdentifyDatastore(const std::string& dir, DatastoreIdPolicy policy);

// The id, created on first use (kCreateIfMissing); error where none exists or can be created.
absl::StatusOr<std::string> DatastoreUuid(const std::string& dir);

}  // namespace ferry
