#pragma once
// Starts a local etcd (tools/client/local_etcd.h) for a test, or skips the test when etcd is not
// installed.

#include <memory>

#include <gtest/gtest.h>

#include "tools/client/local_etcd.h"

namespace ferry::cluster::testing {

// Fails the test on any other error. Use: auto etcd = StartEtcd(1); if (!etcd) return;
inline std::unique_ptr<cli::LocalEtcd> StartEtcdOrSkip(int members) {
  auto etcd = cli::LocalEtcd::Start({.members = members});
  if (absl::IsNotFound(etcd.status())) return nullptr;
  EXPECT_TRUE(etcd.ok()) << etcd.status();
  return etcd.ok() ? std::move(*etcd) : nullptr;
}

#define FERRY_START_ETCD_OR_SKIP(var, members)                                             \
  auto var = ::ferry::cluster::testing::StartEtcdOrSkip(members);                          \
  if (!var) {                                                                              \
    if (!HasFailure()) GTEST_SKIP() << "etcd is not installed (Debian: etcd-server)";      \
    return;                                                                                \
  }

// A client holding a fresh host certificate from the local etcd's CA.
inline std::unique_ptr<EtcdClient> ClientFor(cli::LocalEtcd& etcd, const std::string& name) {
  auto cert = etcd.IssueHostCert(name);
  EXPECT_TRUE(cert.ok()) << cert.status();
  if (!cert.ok()) return nullptr;
  auto client = EtcdClient::Create(etcd.ClientOptions(*cert));
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

}  // namespace ferry::cluster::testing
