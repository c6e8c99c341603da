#include "engine/storage/datastore_probe.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/base/clock.h"
#include "engine/base/unique_fd.h"

namespace ferry {

namespace {

constexpr size_t kMaxHostNameChars = 64;
constexpr size_t kProbeRecordBytes = 512;

// How one probe's I/O ended.
struct ProbeOutcome {
  int error = 0;        // 0: every step succeeded
  std::string detail;   // the failed step and file
};

ProbeOutcome Failed(absl::string_view step, const std::string& path, int err) {
  return {err, absl::StrCat(step, " ", path, ": ", std::strerror(err))};
}

// The probe itself: blocking file I/O, run on a probe thread only.
ProbeOutcome RunProbeIo(const std::string& root, const std::string& host, uint64_t sequence) {
  std::string folder = absl::StrCat(root, "/", kDatastoreHaFolder);
  if (mkdir(folder.c_str(), 0700) != 0 && errno != EEXIST) return Failed("mkdir", folder, errno);
  std::string path = absl::StrCat(folder, "/probe-", host);
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) return Failed("open", path, errno);
  std::string record = absl::StrCat("ferry datastore probe host=", host, " seq=", sequence,
                                    " mono_ns=", MonotonicNanos(), "\n");
  record.resize(kProbeRecordBytes, ' ');
  ssize_t n = pwrite(fd.get(), record.data(), record.size(), 0);
  if (n < 0) return Failed("write", path, errno);
  if (static_cast<size_t>(n) != record.size()) return Failed("write (short)", path, EIO);
  if (fsync(fd.get()) != 0) return Failed("fsync", path, errno);
  std::string back(record.size(), '\0');
  n = pread(fd.get(), back.data(), back.size(), 0);
  if (n < 0) return Failed("read", path, errno);
  if (back != record) return Failed("read back (content differs)", path, EIO);
  return {};
}

}  // namespace

struct DatastoreProbe::Shared {
  std::mutex mu;
  std::condition_variable done;
  bool outstanding ABSL_GUARDED_BY(mu) = false;
  int64_t started_nanos ABSL_GUARDED_BY(mu) = 0;  // of the outstanding or last probe
  uint64_t sequence ABSL_GUARDED_BY(mu) = 0;
  std::optional<ProbeOutcome> outcome ABSL_GUARDED_BY(mu);  // of the last finished probe
  DatastoreProbeResult last ABSL_GUARDED_BY(mu);
};

absl::string_view DatastoreHealthName(DatastoreHealth health) {
  switch (health) {
    case DatastoreHealth::kUnknown: return "unknown";
    case DatastoreHealth::kHealthy: return "healthy";
    case DatastoreHealth::kApd: return "APD";
    case DatastoreHealth::kPdl: return "PDL";
  }
  return "unknown";
}

bool IsDeviceGoneErrno(int err) { return err == ENODEV || err == ENXIO; }

absl::StatusOr<std::unique_ptr<DatastoreProbe>> DatastoreProbe::Create(DatastoreProbeOptions options) {
  if (options.datastore_root.empty() || options.datastore_root[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("datastore probe: the datastore root must be an absolute path, got \"",
                     options.datastore_root.substr(0, 80), "\""));
  }
  const std::string& host = options.host;
  bool host_ok = !host.empty() && host.size() <= kMaxHostNameChars && host != "." && host != "..";
  for (char c : host) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') host_ok = false;
  }
  if (!host_ok) {
    return absl::InvalidArgumentError(absl::StrCat("datastore probe: host name \"", host.substr(0, 80),
                                                   "\" must be 1-64 characters of A-Z a-z 0-9 . _ -"));
  }
  if (options.deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("datastore probe: the deadline must be positive");
  }
  return std::unique_ptr<DatastoreProbe>(new DatastoreProbe(std::move(options)));
}

DatastoreProbe::DatastoreProbe(DatastoreProbeOptions options)
    : options_(std::move(options)), shared_(std::make_shared<Shared>()) {}

// A stuck probe thread owns its share of `shared_` and ends whenever its I/O does.
DatastoreProbe::~DatastoreProbe() = default;

DatastoreProbeResult DatastoreProbe::Probe() {
  const int64_t deadline_nanos = absl::ToInt64Nanoseconds(options_.deadline);
  std::unique_lock lock(shared_->mu);
  if (!shared_->outstanding) {
    shared_->outstanding = true;
    shared_->started_nanos = MonotonicNanos();
    shared_->outcome.reset();
    uint64_t sequence = ++shared_->sequence;
    try {
      std::thread([shared = shared_, root = options_.datastore_root, host = options_.host, sequence] {
        ProbeOutcome outcome = RunProbeIo(root, host, sequence);
        std::lock_guard done_lock(shared->mu);
        shared->outcome = std::move(outcome);
        shared->outstanding = false;
        shared->done.notify_all();
      }).detach();
    } catch (const std::system_error& e) {
      shared_->outstanding = false;
      shared_->outcome = ProbeOutcome{EAGAIN, absl::StrCat("cannot start a probe thread: ", e.what())};
    }
  }
  shared_->done.wait_for(lock, std::chrono::nanoseconds(deadline_nanos), [&] {
    return !shared_->outstanding;
  });

  const int64_t now = MonotonicNanos();
  DatastoreProbeResult result;
  int64_t began = now;  // when the state this probe shows began, unless it continues the last one
  if (shared_->outstanding) {
    result.health = DatastoreHealth::kApd;
    result.timed_out = true;
    began = shared_->started_nanos;  // the I/O has been stuck since the probe started
    result.detail = absl::StrCat("probe of ", options_.datastore_root, " did not finish within ",
                                 absl::FormatDuration(options_.deadline), " (I/O blocked for ",
                                 absl::FormatDuration(absl::Nanoseconds(now - began)), ")");
  } else if (shared_->outcome.has_value() && shared_->outcome->error == 0) {
    result.health = DatastoreHealth::kHealthy;
  } else {
    const ProbeOutcome& failed = *shared_->outcome;
    result.health = IsDeviceGoneErrno(failed.error) ? DatastoreHealth::kPdl : DatastoreHealth::kApd;
    result.error = failed.error;
    result.detail = failed.detail;
    began = shared_->started_nanos;
  }
  const DatastoreProbeResult& last = shared_->last;
  result.since_nanos = last.health == result.health ? last.since_nanos : began;
  shared_->last = result;
  return result;
}

DatastoreProbeResult DatastoreProbe::last() const {
  std::lock_guard lock(shared_->mu);
  return shared_->last;
}

bool DatastoreProbe::probe_outstanding() const {
  std::lock_guard lock(shared_->mu);
  return shared_->outstanding;
}

}  // namespace ferry
