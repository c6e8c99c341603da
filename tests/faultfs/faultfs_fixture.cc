#include "tests/faultfs/faultfs_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/base/status.h"
#include "tests/faultfs/control_channel.h"

extern char** environ;

namespace ferry::faultfs {
namespace {

// /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountField(absl::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      int value = 0;
      bool octal = true;
      for (size_t k = 1; k <= 3; ++k) {
        char c = field[i + k];
        if (c < '0' || c > '7') octal = false;
        value = value * 8 + (c - '0');
      }
      if (octal) {
        out.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

std::string FindInPath(const char* name) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "/usr/bin:/bin", ':')) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string ReadFileText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs a program to completion, its output to `log_path`; its exit status (-1 when it could not run).
int RunProgram(const std::vector<std::string>& argv, const std::string& log_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Waits up to `timeout` for `pid` to exit; true when it did (and was reaped).
bool WaitForExit(pid_t pid, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    if (absl::Now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

bool IsMountPoint(const std::string& path) {
  std::ifstream mounts("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mounts, line)) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
    if (fields.size() > 4 && UnescapeMountField(fields[4]) == path) return true;
  }
  return false;
}

std::string FaultFsMount::BinaryPath() {
  if (const char* dir = std::getenv("FERRY_BIN_DIR"); dir != nullptr && dir[0] != '\0') {
    return absl::StrCat(dir, "/ferry-faultfs");
  }
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "ferry-faultfs";
  self[n] = '\0';
  return (std::filesystem::path(self).parent_path() / "ferry-faultfs").string();
}

std::string FaultFsMount::UnavailableReason() {
  if (access("/dev/fuse", R_OK | W_OK) != 0) return "ferry-faultfs needs /dev/fuse (not present or not accessible)";
  if (FindInPath("fusermount3").empty()) return "ferry-faultfs needs fusermount3 (Debian package fuse3)";
  if (geteuid() != 0) return "ferry-faultfs tests run as root (they mount a FUSE file system)";
  if (access(BinaryPath().c_str(), X_OK) != 0) return absl::StrCat("ferry-faultfs is not built: ", BinaryPath());
  return "";
}

absl::StatusOr<std::unique_ptr<FaultFsMount>> FaultFsMount::Start(absl::string_view initial_mode) {
  Options options;
  options.initial_mode = std::string(initial_mode);
  return Start(options);
}

absl::StatusOr<std::unique_ptr<FaultFsMount>> FaultFsMount::Start(const Options& options) {
  const std::string& backing_dir = options.backing_dir;
  if (std::string reason = UnavailableReason(); !reason.empty()) return absl::FailedPreconditionError(reason);
  char tmpl[] = "/tmp/ferry-faultfs-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return ErrnoError("mkdtemp for ferry-faultfs");
  auto mount = std::unique_ptr<FaultFsMount>(new FaultFsMount());
  mount->work_dir_ = tmpl;
  mount->backing_dir_ = backing_dir.empty() ? mount->work_dir_ + "/backing" : backing_dir;
  mount->mount_dir_ = mount->work_dir_ + "/mnt";
  mount->control_path_ = mount->work_dir_ + "/control.sock";
  mount->log_path_ = mount->work_dir_ + "/faultfs.log";
  if ((backing_dir.empty() && mkdir(mount->backing_dir_.c_str(), 0755) != 0) ||
      mkdir(mount->mount_dir_.c_str(), 0755) != 0) {
    return ErrnoError("mkdir in " + mount->work_dir_);
  }

  std::vector<std::string> argv = {BinaryPath(), mount->backing_dir_, mount->mount_dir_,
                                   "--control",  mount->control_path_, "--mode",
                                   options.initial_mode, "--exit-with-parent"};
  if (options.shared_locks) argv.push_back("--shared-locks");
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, mount->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  int rc = posix_spawn(&mount->pid_, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return ErrnoError("spawn " + argv[0], rc);

  // Live = mounted and the control channel answers (each is set up before the other can be seen).
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (;;) {
    if (IsMountPoint(mount->mount_dir_) && SendControlRequest(mount->control_path_, "get").ok()) break;
    int status;
    if (waitpid(mount->pid_, &status, WNOHANG) == mount->pid_) {
      mount->pid_ = -1;
      return absl::InternalError(
          absl::StrCat("ferry-faultfs exited before its mount was live: ", ReadFileText(mount->log_path_)));
    }
    if (absl::Now() > deadline) {
      mount->Stop().IgnoreError();
      return absl::DeadlineExceededError(
          absl::StrCat("ferry-faultfs mount not live after 10 s: ", ReadFileText(mount->log_path_)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return mount;
}

FaultFsMount::~FaultFsMount() { Stop().IgnoreError(); }

std::string FaultFsMount::MountPath(absl::string_view relative) const { return absl::StrCat(mount_dir_, "/", relative); }
std::string FaultFsMount::BackingPath(absl::string_view relative) const {
  return absl::StrCat(backing_dir_, "/", relative);
}

absl::Status FaultFsMount::SetMode(absl::string_view mode) {
  return SendControlRequest(control_path_, absl::StrCat("set ", mode)).status();
}

absl::StatusOr<FaultFsStatus> FaultFsMount::Status() {
  ASSIGN_OR_RETURN(std::string reply, SendControlRequest(control_path_, "get"));
  // "ok MODE [ARG] [path=...] blocked=N failed=N delayed=N"
  FaultFsStatus status;
  std::vector<std::string> mode_words;
  std::vector<absl::string_view> words = absl::StrSplit(reply, ' ', absl::SkipEmpty());
  for (size_t i = 1; i < words.size(); ++i) {
    absl::string_view w = words[i];
    if (absl::ConsumePrefix(&w, "blocked=")) {
      if (!absl::SimpleAtoi(w, &status.blocked)) return absl::InternalError("bad blocked= in " + reply);
    } else if (absl::ConsumePrefix(&w, "failed=")) {
      if (!absl::SimpleAtoi(w, &status.failed)) return absl::InternalError("bad failed= in " + reply);
    } else if (absl::ConsumePrefix(&w, "delayed=")) {
      if (!absl::SimpleAtoi(w, &status.delayed)) return absl::InternalError("bad delayed= in " + reply);
    } else {
      mode_words.emplace_back(w);
    }
  }
  status.mode = absl::StrJoin(mode_words, " ");
  return status;
}

absl::Status FaultFsMount::WaitForBlocked(int64_t count, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    ASSIGN_OR_RETURN(FaultFsStatus status, Status());
    if (status.blocked >= count) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("only ", status.blocked, " operations blocked after ",
                                                      absl::FormatDuration(timeout), ", wanted ", count));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

absl::Status FaultFsMount::WaitForNoneBlocked(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    absl::StatusOr<FaultFsStatus> status = Status();
    if (!status.ok()) return status.status();
    if (status->blocked == 0) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(status->blocked, " operations still blocked after ",
                                                      absl::FormatDuration(timeout)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

absl::Status FaultFsMount::Stop() {
  if (stopped_) return absl::OkStatus();
  stopped_ = true;
  absl::Status result;
  if (pid_ > 0) {
    // 1. Release whatever an APD holds, so nothing blocked is lost or left hanging.
    absl::Status healthy = SetMode("healthy");
    if (!healthy.ok()) result = healthy;
    // 2. A plain unmount, retried while released operations still hold files open; the daemon
    //    sees its device close and exits.
    absl::Time deadline = absl::Now() + absl::Seconds(3);
    bool exited = false;
    while (!(exited = WaitForExit(pid_, absl::Milliseconds(50))) && absl::Now() < deadline) {
      if (IsMountPoint(mount_dir_)) RunProgram({FindInPath("fusermount3"), "-u", mount_dir_}, log_path_);
    }
    if (!exited) {
      // 3. Still running (the mount is busy): SIGTERM ends its loop, which releases blocked
      //    operations and detaches the mount; then SIGKILL.
      kill(pid_, SIGTERM);
      if (!WaitForExit(pid_, absl::Seconds(5))) {
        kill(pid_, SIGKILL);
        WaitForExit(pid_, absl::Seconds(5));
        if (result.ok()) result = absl::InternalError("ferry-faultfs did not exit on SIGTERM; killed");
      }
    }
    pid_ = -1;
  }
  // 4. Last resort: a lazy unmount, so no hung mount outlives the test.
  if (!mount_dir_.empty() && IsMountPoint(mount_dir_)) {
    RunProgram({FindInPath("fusermount3"), "-u", "-z", mount_dir_}, log_path_);
    if (result.ok()) result = absl::InternalError("ferry-faultfs mount needed a lazy unmount");
  }
  if (!work_dir_.empty() && !IsMountPoint(mount_dir_)) {
    std::error_code ec;
    std::filesystem::remove_all(work_dir_, ec);
  }
  return result;
}

}  // namespace ferry::faultfs
