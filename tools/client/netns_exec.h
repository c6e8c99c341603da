#pragma once
// Runs a child process inside a named network namespace (`ip netns add NAME`): the command line
// becomes `ip netns exec NAME COMMAND...`, which enters the namespace and execs COMMAND in place,
// so the spawned pid is COMMAND's own. Spawn the result with posix_spawnp (`ip` is found on PATH).
// Used by LocalEtcd and LocalCluster for the HA partition tests (docs/cluster.md).

#include <string>
#include <vector>

namespace ferry::cli {

// `argv` unchanged when `netns` is empty (the caller's own namespace).
inline std::vector<std::string> InNetns(const std::string& netns, std::vector<std::string> argv) {
  if (netns.empty()) return argv;
  std::vector<std::string> out = {"ip", "netns", "exec", netns};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

}  // namespace ferry::cli
