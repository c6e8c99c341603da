#include "engine/net/port_group_interface.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

const PortGroupInterfaces kTable = {{"VM Network", "br0"}, {"Storage", "veth-st0"}};

TEST(PortGroupInterface, MapsAPortGroupToItsInterface) {
  auto iface = InterfaceForPortGroup("Storage", kTable);
  ASSERT_TRUE(iface.ok()) << iface.status();
  EXPECT_EQ(*iface, "veth-st0");
}

TEST(PortGroupInterface, UnknownPortGroupNamesItAndTheKnownOnes) {
  auto iface = InterfaceForPortGroup("DMZ", kTable);
  ASSERT_EQ(iface.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(iface.status().message(),
            "port group \"DMZ\" has no host interface; known port groups: \"Storage\", \"VM "
            "Network\"");
}

TEST(PortGroupInterface, PortGroupWithEmptyInterfaceIsAnError) {
  auto iface = InterfaceForPortGroup("Internal", {{"Internal", ""}});
  EXPECT_EQ(iface.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(PortGroupInterface, PlanKeepsGoodNicsAndWarnsAboutTheRest) {
  const AnnouncePlan plan = PlanAnnouncements({{"52:54:00:00:00:01", "VM Network"},
                                               {"52:54:00:00:00:02", "DMZ"},
                                               {"not-a-mac", "Storage"},
                                               {"52:54:00:00:00:03", "Storage"}},
                                              kTable);
  ASSERT_EQ(plan.targets.size(), 2u);
  EXPECT_EQ(plan.targets[0].mac.ToString(), "52:54:00:00:00:01");
  EXPECT_EQ(plan.targets[0].interface, "br0");
  EXPECT_EQ(plan.targets[1].mac.ToString(), "52:54:00:00:00:03");
  EXPECT_EQ(plan.targets[1].interface, "veth-st0");
  ASSERT_EQ(plan.warnings.size(), 2u);
  EXPECT_NE(plan.warnings[0].find("52:54:00:00:00:02 not announced: port group \"DMZ\""),
            std::string::npos)
      << plan.warnings[0];
  EXPECT_NE(plan.warnings[1].find("invalid MAC address \"not-a-mac\""), std::string::npos)
      << plan.warnings[1];
}

}  // namespace
}  // namespace ferry
