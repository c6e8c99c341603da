// HA's security: etcd talks only to certificates from the cluster's CA; HA's files are root-only.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "engine/agent/certs.h"
#include "engine/cluster/cluster_keys.h"
#include "engine/cluster/cluster_member.h"
#include "engine/cluster/cluster_store.h"
#include "tests/cluster/etcd_fixture.h"

namespace ferry::cluster {
namespace {

int ModeOf(const std::string& path) {
  struct stat st{};
  if (stat(path.c_str(), &st) != 0) return -1;
  return st.st_mode & 0777;
}

TEST(HaSecurity, ClientCertificateFromAnotherCaCannotTalkToEtcdOrJoin) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  auto good = testing::ClientFor(*etcd, "host-a");
  ASSERT_TRUE(good);
  ASSERT_TRUE(CreateCluster(*good, "c1", ClusterConfig{}).ok());

  auto other_ca = CreateCa("someone-elses-ca");
  ASSERT_TRUE(other_ca.ok());
  auto intruder = IssueHostCert(*other_ca, "host-x", {"127.0.0.1"});
  ASSERT_TRUE(intruder.ok());
  auto options = etcd->ClientOptions(*intruder);
  options.call_timeout = absl::Seconds(1);
  auto bad = EtcdClient::Create(options);
  ASSERT_TRUE(bad.ok());
  auto read = (*bad)->Get(ClusterKeys("c1").config());
  EXPECT_FALSE(read.ok());
  auto joined = ClusterMember::Join(**bad, {"c1", "host-x", "", nullptr});
  EXPECT_FALSE(joined.ok());
  auto hosts = good->GetPrefix(ClusterKeys("c1").hosts());
  ASSERT_TRUE(hosts.ok());
  EXPECT_TRUE(hosts->empty());
}

TEST(HaSecurity, ServerCertificateFromAnotherCaIsNotTrusted) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  // Our certificate is fine, but we trust a different CA than the one etcd's certificate chains to.
  auto cert = etcd->IssueHostCert("host-a");
  ASSERT_TRUE(cert.ok());
  auto other_ca = CreateCa("someone-elses-ca");
  ASSERT_TRUE(other_ca.ok());
  auto options = etcd->ClientOptions(*cert);
  options.tls.ca_pem = other_ca->cert_pem;
  options.call_timeout = absl::Seconds(1);
  auto client = EtcdClient::Create(options);
  ASSERT_TRUE(client.ok());
  EXPECT_FALSE((*client)->Put("/x", "y").ok());
}

TEST(HaSecurity, EtcdCertificatesAndDataAreRootOnly) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  EXPECT_EQ(ModeOf(etcd->dir() + "/certs"), 0700);
  EXPECT_EQ(ModeOf(etcd->dir() + "/certs/etcd-0.key"), 0600);
  EXPECT_EQ(ModeOf(etcd->dir() + "/certs/ca.key"), 0600);
  EXPECT_EQ(ModeOf(etcd->dir() + "/etcd-0.data"), 0700);
  EXPECT_EQ(ModeOf(etcd->dir() + "/etcd-0.log"), 0600);
}

}  // namespace
}  // namespace ferry::cluster
