#include "engine/cluster/datastore_heartbeat.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/base/status.h"
#include "engine/cluster/cluster_keys.h"

namespace ferry::cluster {
namespace {

constexpr char kMagic[] = "ferry-ha-heartbeat 1";

uint64_t Fnv1a64(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

absl::Status EnsureDir(const std::string& path) {
  if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoError(absl::StrCat("mkdir ", path));
  struct stat st{};
  if (stat(path.c_str(), &st) != 0) return ErrnoError(absl::StrCat("stat ", path));
  if (!S_ISDIR(st.st_mode)) return absl::FailedPreconditionError(absl::StrCat(path, " is not a directory"));
  if ((st.st_mode & 0077) != 0 && chmod(path.c_str(), 0700) != 0) return ErrnoError(absl::StrCat("chmod ", path));
  return absl::OkStatus();
}

absl::Status CheckPrivate(const std::string& path) {
  struct stat st{};
  if (stat(path.c_str(), &st) != 0) return ErrnoError(absl::StrCat("stat ", path));
  if ((st.st_mode & 0077) != 0 || st.st_uid != geteuid()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s is mode %04o owned by uid %d: open to others, not trusted", path, st.st_mode & 0777,
                        st.st_uid));
  }
  return absl::OkStatus();
}

}  // namespace

std::string HeartbeatPath(const std::string& root, const std::string& cluster, const std::string& host) {
  return absl::StrCat(root, "/.ferry-ha/", cluster, "/hosts/", host, ".hb");
}

std::string EncodeHeartbeat(const HeartbeatRecord& r) {
  std::string body = absl::StrCat(kMagic, "\ncluster ", r.cluster, "\nhost ", r.host, "\nsequence ", r.sequence,
                                  "\ntime_unix_ns ", r.time_unix_ns, "\n");
  if (!r.own_view.empty()) absl::StrAppend(&body, "own_view ", r.own_view, "\n");
  return absl::StrCat(body, absl::StrFormat("fnv1a64 %016x\n", Fnv1a64(body)));
}

absl::StatusOr<HeartbeatRecord> DecodeHeartbeat(const std::string& text) {
  size_t sum_at = text.rfind("fnv1a64 ");
  if (sum_at == std::string::npos || text.compare(0, sizeof(kMagic) - 1, kMagic) != 0) {
    return absl::DataLossError("not a Ferry heartbeat record (magic or checksum line missing)");
  }
  std::string body = text.substr(0, sum_at);
  std::string sum(absl::StripSuffix(text.substr(sum_at + 8), "\n"));
  if (sum != absl::StrFormat("%016x", Fnv1a64(body))) return absl::DataLossError("heartbeat record checksum mismatch");
  HeartbeatRecord r;
  std::vector<std::string> lines = absl::StrSplit(body, '\n', absl::SkipEmpty());
  if (lines.size() != 5 && lines.size() != 6) {
    return absl::DataLossError("heartbeat record has the wrong number of fields");
  }
  auto field = [&](int i, const char* name) -> std::string {
    std::string prefix = absl::StrCat(name, " ");
    return lines[i].rfind(prefix, 0) == 0 ? lines[i].substr(prefix.size()) : std::string();
  };
  r.cluster = field(1, "cluster");
  r.host = field(2, "host");
  if (r.cluster.empty() || r.host.empty() || !absl::SimpleAtoi(field(3, "sequence"), &r.sequence) ||
      !absl::SimpleAtoi(field(4, "time_unix_ns"), &r.time_unix_ns)) {
    return absl::DataLossError("heartbeat record has a malformed field");
  }
  if (lines.size() == 6) {
    r.own_view = field(5, "own_view");
    if (r.own_view != "isolated" && r.own_view != "partitioned") {
      return absl::DataLossError("heartbeat record's own_view is neither isolated nor partitioned");
    }
  }
  return r;
}

absl::Status WriteHeartbeat(const std::string& root, const HeartbeatRecord& r) {
  if (auto st = ValidateName("cluster", r.cluster); !st.ok()) return st;
  if (auto st = ValidateName("host", r.host); !st.ok()) return st;
  for (const std::string& dir : {absl::StrCat(root, "/.ferry-ha"), absl::StrCat(root, "/.ferry-ha/", r.cluster),
                                 absl::StrCat(root, "/.ferry-ha/", r.cluster, "/hosts")}) {
    if (auto st = EnsureDir(dir); !st.ok()) return st;
  }
  const std::string path = HeartbeatPath(root, r.cluster, r.host);
  const std::string tmp = path + ".tmp";
  const std::string text = EncodeHeartbeat(r);
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError(absl::StrCat("open ", tmp));
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fchmod(fd, 0600) == 0 &&
            fdatasync(fd) == 0;
  int err = errno;
  close(fd);
  if (!ok) return ErrnoError(absl::StrCat("write ", tmp), err);
  if (rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError(absl::StrCat("rename ", tmp));
  return absl::OkStatus();
}

absl::StatusOr<HeartbeatRecord> ReadHeartbeat(const std::string& root, const std::string& cluster,
                                              const std::string& host) {
  if (auto st = ValidateName("cluster", cluster); !st.ok()) return st;
  if (auto st = ValidateName("host", host); !st.ok()) return st;
  const std::string path = HeartbeatPath(root, cluster, host);
  if (auto st = CheckPrivate(absl::StrCat(root, "/.ferry-ha/", cluster)); !st.ok()) return st;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return ErrnoError(absl::StrCat("open ", path));
  std::string text(4096, '\0');
  ssize_t n = read(fd, text.data(), text.size());
  close(fd);
  if (n < 0) return ErrnoError(absl::StrCat("read ", path));
  text.resize(static_cast<size_t>(n));
  if (auto st = CheckPrivate(path); !st.ok()) return st;
  auto r = DecodeHeartbeat(text);
  if (!r.ok()) return absl::DataLossError(absl::StrCat(path, ": ", r.status().message()));
  if (r->cluster != cluster || r->host != host) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": names host ", r->host, " of cluster ", r->cluster,
                                                      ", not ", host, " of ", cluster));
  }
  return r;
}

LostHostVerdict ClassifyLostHost(const absl::StatusOr<HeartbeatRecord>& before,
                                 const absl::StatusOr<HeartbeatRecord>& after) {
  if (!before.ok() || !after.ok()) return LostHostVerdict::kUnknown;
  return after->sequence != before->sequence ? LostHostVerdict::kIsolatedOrPartitioned : LostHostVerdict::kFailed;
}

}  // namespace ferry::cluster
