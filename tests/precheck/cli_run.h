#pragma once
// Runs the built `migrate` binary (FERRY_BIN_DIR) and keeps its stdout and stderr apart, so a
// test can tell "JSON on stdout" from "text on stderr".

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace ferry::testing {

struct MigrateRun {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

inline MigrateRun RunMigrate(const std::string& args) {
  const char* bin = getenv("FERRY_BIN_DIR");
  char err_path[] = "/tmp/ferry-cli-stderr-XXXXXX";
  int fd = mkstemp(err_path);
  MigrateRun r;
  if (fd < 0) return r;
  close(fd);
  std::string cmd = std::string(bin ? bin : ".") + "/migrate " + args + " 2>" + err_path;
  FILE* p = popen(cmd.c_str(), "r");
  if (p != nullptr) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    int status = pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  std::stringstream err;
  err << std::ifstream(err_path).rdbuf();
  r.err = err.str();
  unlink(err_path);
  return r;
}

}  // namespace ferry::testing
