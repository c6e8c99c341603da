#pragma once
// Datastores for storage tests: a temp directory, a real read-only bind mount, a small tmpfs.

#include <sys/mount.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "engine/host/host_facts.h"
#include "tests/host/test_util.h"

namespace ferry::testing {

inline DatastoreFacts Datastore(const std::string& name, const std::string& path) {
  return DatastoreFacts{name, path, "", false};
}

// Every file under `dir` with its size, mode and content hash-free text (small files) or mtime:
// what "the VM's files are untouched" compares.
inline std::map<std::string, std::string> FilesUnder(const std::string& dir) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
    struct stat st {};
    if (lstat(e.path().c_str(), &st) != 0) continue;
    std::ostringstream v;
    v << st.st_mode << " " << st.st_size << " " << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec;
    if (S_ISREG(st.st_mode) && st.st_size < 65536) {
      std::ifstream in(e.path());
      v << " " << in.rdbuf();
    }
    out[e.path().string()] = v.str();
  }
  return out;
}

// A mount made for one test (bind mount remounted read-only, or a tmpfs of a given size); the
// test skips where mounting is not permitted.
class TestMount {
 public:
  ~TestMount() {
    if (mounted_) umount2(path_.c_str(), MNT_DETACH);
  }
  // Empty string when mounted, else why not.
  std::string BindReadOnly(const std::string& src, const std::string& target) {
    path_ = target;
    if (mount(src.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) return Why("bind-mount");
    mounted_ = true;
    if (mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
      return Why("remount read-only");
    }
    return "";
  }
  std::string Tmpfs(const std::string& target, const std::string& size) {
    path_ = target;
    const std::string opts = "size=" + size;
    if (mount("ferry-test", target.c_str(), "tmpfs", 0, opts.c_str()) != 0) return Why("mount a tmpfs");
    mounted_ = true;
    return "";
  }

 private:
  static std::string Why(const char* what) {
    return std::string("cannot ") + what + " here (" + strerror(errno) + "): needs root";
  }
  std::string path_;
  bool mounted_ = false;
};

}  // namespace ferry::testing
