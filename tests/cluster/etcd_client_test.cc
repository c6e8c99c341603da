// The etcd client against real etcd processes.
#include "engine/cluster/etcd_client.h"

#include <gtest/gtest.h>

#include <thread>

#include "tests/cluster/etcd_fixture.h"

namespace ferry::cluster {
namespace {

TEST(HaEtcdClient, PutGetPrefixAndTransactionalCreate) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  auto client = testing::ClientFor(*etcd, "host-a");
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Put("/t/a", "1").ok());
  ASSERT_TRUE(client->Put("/t/b", "2").ok());
  ASSERT_TRUE(client->Put("/u/c", "3").ok());
  auto a = client->Get("/t/a");
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->value, "1");
  auto prefix = client->GetPrefix("/t/");
  ASSERT_TRUE(prefix.ok());
  ASSERT_EQ(prefix->size(), 2u);
  EXPECT_EQ((*prefix)[1].key, "/t/b");
  auto created = client->CreateIfAbsent("/t/a", "other", 0);
  ASSERT_TRUE(created.ok());
  EXPECT_FALSE(*created);
  created = client->CreateIfAbsent("/t/new", "x", 0);
  ASSERT_TRUE(created.ok());
  EXPECT_TRUE(*created);
  ASSERT_TRUE(client->Delete("/t/a").ok());
  auto gone = client->Get("/t/a");
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
}

TEST(HaEtcdClient, KeyBoundToRevokedLeaseDisappearsAndWatchSeesIt) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  auto client = testing::ClientFor(*etcd, "host-a");
  ASSERT_TRUE(client);
  auto lease = client->GrantLease(5);
  ASSERT_TRUE(lease.ok()) << lease.status();
  auto ttl = client->KeepAlive(lease->id);
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_GT(*ttl, 0);
  ASSERT_TRUE(client->CreateIfAbsent("/t/leased", "v", lease->id).ok());
  auto kv = client->Get("/t/leased");
  ASSERT_TRUE(kv.ok() && kv->has_value());
  EXPECT_EQ((*kv)->lease, lease->id);
  std::thread revoker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_TRUE(client->RevokeLease(lease->id).ok());
  });
  auto deleted = client->WaitForDelete("/t/leased", (*kv)->mod_revision + 1, absl::Seconds(10));
  revoker.join();
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_TRUE(*deleted);
  EXPECT_TRUE(absl::IsNotFound(client->KeepAlive(lease->id).status()));
  auto info = client->LeaseTimeToLive(lease->id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->remaining_ttl_s, -1);
}

TEST(HaEtcdClient, WatchWithNothingHappeningEndsAtItsBound) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  auto client = testing::ClientFor(*etcd, "host-a");
  ASSERT_TRUE(client);
  auto rev = client->Put("/t/still", "v");
  ASSERT_TRUE(rev.ok());
  auto deleted = client->WaitForDelete("/t/still", *rev + 1, absl::Milliseconds(300));
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_FALSE(*deleted);
}

TEST(HaEtcdClient, CallsMoveOnToALiveMemberWhenOneIsDown) {
  FERRY_START_ETCD_OR_SKIP(etcd, 3);
  auto client = testing::ClientFor(*etcd, "host-a");
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Put("/t/k", "before").ok());
  etcd->Kill(0);  // the first endpoint the client tries
  auto rev = client->Put("/t/k", "after");
  ASSERT_TRUE(rev.ok()) << rev.status();
  auto kv = client->Get("/t/k");
  ASSERT_TRUE(kv.ok() && kv->has_value()) << kv.status();
  EXPECT_EQ((*kv)->value, "after");
}

TEST(HaEtcdClient, BadOptionsAreNamed) {
  EtcdClientOptions o;
  EXPECT_NE(EtcdClient::Create(o).status().message().find("--etcd-endpoints"), std::string::npos);
  o.endpoints = {"https://127.0.0.1:2379"};
  EXPECT_NE(EtcdClient::Create(o).status().message().find("not HOST:PORT"), std::string::npos);
  o.endpoints = {"127.0.0.1:2379"};
  EXPECT_NE(EtcdClient::Create(o).status().message().find("--etcd-ca"), std::string::npos);
}

}  // namespace
}  // namespace ferry::cluster
