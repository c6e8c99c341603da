#pragma once
// Runs the `migrate` CLI against agent i of a LocalCluster, as an operator would from another
// terminal (end-to-end tests of jobs and of the fault matrix).

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tools/client/local_cluster.h"

namespace ferry::e2e {

struct Cli {
  int exit_code = -1;
  std::string out;
};

// `$FERRY_BIN_DIR/migrate <globals for agent i> args` (stderr to the test's log).
inline Cli RunMigrate(const cli::LocalCluster& c, const std::string& args, int agent = 0) {
  const char* bin = std::getenv("FERRY_BIN_DIR");
  const cli::ClientTls& tls = c.client_tls();
  std::string cmd = std::string(bin ? bin : ".") + "/migrate --agent " + c.address(agent) + " --agent-name " +
                    c.name(agent) + " --tls-ca " + tls.ca + " --tls-cert " + tls.cert + " --tls-key " + tls.key +
                    " " + args;
  Cli r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline nlohmann::json Json(const Cli& r) {
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.out;
  return j;
}

}  // namespace ferry::e2e
