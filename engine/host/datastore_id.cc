#include "engine/host/datastore_id.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/status.h"
#include "engine/base/unique_fd.h"

namespace ferry {
namespace {

absl::StatusOr<std::string> NewUuid() {
  uint8_t b[16];
  if (getrandom(b, sizeof(b), 0) != sizeof(b)) return ErrnoError("getrandom");
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  return absl::StrFormat("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
                         b[12], b[13], b[14], b[15]);
}

absl::StatusOr<std::string> ReadId(const std::string& file) {
  UniqueFd fd(open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError(absl::StrCat("open ", file));
  char buf[128];
  ssize_t n = read(fd.get(), buf, sizeof(buf));
  if (n < 0) return ErrnoError(absl::StrCat("read ", file));
  std::string id(absl::StripAsciiWhitespace(absl::string_view(buf, n)));
  if (id.size() != 36) return absl::DataLossError(absl::StrCat(file, ": not a datastore UUID: '", id, "'"));
  return id;
}

// First use: write to a temp file and link it into place, so a concurrent first use by another
// host either wins or reads the winner's id, never a half-written file.
absl::StatusOr<std::string> CreateId(const std::string& dir, const std::string& file) {
  ASSIGN_OR_RETURN(std::string id, NewUuid());
  std::string tmp = absl::StrCat(file, ".tmp.", getpid());
  {
    UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid()) return ErrnoError(absl::StrCat("datastore ", dir, ": create ", tmp));
    std::string line = id + "\n";
    if (write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
        fsync(fd.get()) != 0) {
      absl::Status st = ErrnoError(absl::StrCat("write ", tmp));
      unlink(tmp.c_str());
      return st;
    }
  }
  int rc = link(tmp.c_str(), file.c_str());
  int err = errno;
  unlink(tmp.c_str());
  if (rc != 0 && err != EEXIST) return ErrnoError(absl::StrCat("create ", file), err);
  return ReadId(file);
}

}  // namespace

absl::StatusOr<DatastoreIdentity> IdentifyDatastore(const std::string& dir, DatastoreIdPolicy policy) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return ErrnoError(absl::StrCat("datastore ", dir));
  if (!S_ISDIR(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat("datastore ", dir, ": not a directory"));
  DatastoreIdentity id;
  struct statvfs fs;
  id.read_only = statvfs(dir.c_str(), &fs) == 0 && (fs.f_flag & ST_RDONLY) != 0;
  std::string file = absl::StrCat(dir, "/", kDatastoreIdFile);
  if (access(file.c_str(), F_OK) == 0) {
    ASSIGN_OR_RETURN(id.uuid, ReadId(file));
    return id;
  }
  if (policy == DatastoreIdPolicy::kReadOnly || id.read_only) return id;
  ASSIGN_OR_RETURN(id.uuid, CreateId(dir, file));
  return id;
}

absl::StatusOr<std::string> DatastoreUuid(const std::string& dir) {
  ASSIGN_OR_RETURN(DatastoreIdentity id, IdentifyDatastore(dir, DatastoreIdPolicy::kCreateIfMissing));
  if (id.uuid.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("datastore ", dir, " is read-only here and has no ", kDatastoreIdFile));
  }
  return id.uuid;
}

}  // namespace ferry
