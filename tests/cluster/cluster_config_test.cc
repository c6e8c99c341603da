#include "engine/cluster/cluster_config.h"

#include <gtest/gtest.h>

#include "engine/cluster/cluster_keys.h"

namespace ferry::cluster {
namespace {

TEST(HaConfig, DefaultsAreValidAndRoundTripThroughJson) {
  ClusterConfig c;
  ASSERT_TRUE(Validate(c).ok());
  c.heartbeat_interval_ms = 1500;
  c.isolation_response = IsolationResponse::kPowerOff;
  c.vmcp_apd = ApdResponse::kRestartConservative;
  auto back = ConfigFromJson(ToJson(c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ToJson(*back), ToJson(c));
  EXPECT_EQ(back->LeaseTtlSeconds(), 5);  // 1.5 s x 3, rounded up
}

TEST(HaConfig, HeartbeatDatastoresMustBeTwoToFive) {
  ClusterConfig c;
  c.heartbeat_datastores = 1;
  auto st = Validate(c);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("heartbeat_datastores"), std::string::npos) << st;
  c.heartbeat_datastores = 6;
  EXPECT_FALSE(Validate(c).ok());
  c.heartbeat_datastores = 5;
  EXPECT_TRUE(Validate(c).ok());
}

TEST(HaConfig, BadFieldsAndValuesAreNamed) {
  ClusterConfig c;
  auto st = SetConfigField(c, "isolation_response", "reboot");
  EXPECT_NE(st.message().find("leave-running, shutdown, power-off"), std::string::npos) << st;
  st = SetConfigField(c, "heartbeat_colour", "1");
  EXPECT_NE(st.message().find("no field 'heartbeat_colour'"), std::string::npos) << st;
  st = SetConfigField(c, "heartbeat_interval_ms", "fast");
  EXPECT_NE(st.message().find("not a number"), std::string::npos) << st;
  EXPECT_FALSE(ConfigFromJson("[1,2]").ok());
  EXPECT_FALSE(ConfigFromJson("{\"heartbeat_interval_ms\": 5}").ok());  // below 100 ms
  EXPECT_FALSE(ConfigFromJson("{\"heartbeat_misses\": -3}").ok());
}

TEST(HaConfig, NamesAreCheckedBeforeBecomingKeys) {
  EXPECT_TRUE(ValidateName("cluster", "prod-1").ok());
  EXPECT_FALSE(ValidateName("cluster", "").ok());
  EXPECT_FALSE(ValidateName("cluster", "../etc").ok());
  EXPECT_FALSE(ValidateName("host", "a/b").ok());
  EXPECT_FALSE(ValidateName("host", std::string(64, 'a')).ok());
  EXPECT_EQ(ClusterKeys("c1").host("h1"), "/ferry/clusters/c1/hosts/h1");
}

}  // namespace
}  // namespace ferry::cluster
