#pragma once
// A small network for the HA partition tests: each host (its ferry-agent, its VMMs and an etcd
// member) in a network namespace of its own, `ferry-nt<pid>-h<N>`, with one veth `eth0` at
// 10.77.0.<N>/24; the other end, `vh<N>`, on a bridge in the test process's own namespace (the
// "switch"), which also holds 10.77.0.254: the test's view of every host and the hosts' isolation
// address (a gateway that accepts connections). Links are cut by taking `vh<N>` down; groups are
// partitioned by blackhole routes in the hosts' namespaces. Nothing here touches the machine's
// own namespace: the test process moves into a private one before any thread exists
// (EnterSwitchNamespace, from a gtest Environment), so only namespaces these tests create carry
// traffic. docs/cluster.md "Partitions".

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace ferry::cluster::testing {

class NetnsLab {
 public:
  static constexpr char kGatewayIp[] = "10.77.0.254";

  // Once per process, before any other thread exists: moves the process into a private network
  // namespace with lo up and the bridge. Afterwards Create() fails with the reason it did not work
  // (not root, no `ip`, namespaces not allowed), for the tests to skip with.
  static void EnterSwitchNamespace();

  // `hosts` namespaces wired to the switch; first removes namespaces (and kills the processes in
  // them) that a killed earlier run of these tests left behind.
  static absl::StatusOr<std::unique_ptr<NetnsLab>> Create(int hosts);
  // Kills what still runs in the namespaces, then deletes them and their links.
  ~NetnsLab();

  int hosts() const { return hosts_; }
  std::string netns(int i) const;  // host i (0-based)
  std::string ip(int i) const;     // 10.77.0.<i+1>
  // HOST:PORT of a listening socket on the switch: answers as long as the host's link is up.
  const std::string& gateway() const { return gateway_; }

  absl::Status CutLink(int i);   // host i reaches nothing, nothing reaches it
  absl::Status HealLink(int i);
  // Hosts in different groups no longer reach each other (all still reach the switch).
  absl::Status Partition(const std::vector<std::vector<int>>& groups);
  absl::Status HealPartition();

 private:
  NetnsLab() = default;
  absl::Status Build();
  absl::Status StartGateway();

  int hosts_ = 0;
  std::string prefix_;
  std::string gateway_;
  int gateway_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::pair<int, int>> blackholes_;  // (in host, to host)
};

}  // namespace ferry::cluster::testing
