#include "engine/net/rarp_frame.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

TEST(RarpFrame, MatchesQemuSelfAnnounceByteForByte) {
  const MacAddress mac({0x52, 0x54, 0x00, 0x12, 0x34, 0x56});
  // Written out by hand from RFC 903 / QEMU's announce_self_create(), not from the builder.
  const RarpFrame expected = {
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  //  0: destination: broadcast
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  //  6: source: the NIC
      0x80, 0x35,                          // 12: ethertype RARP
      0x00, 0x01,                          // 14: hardware type Ethernet
      0x08, 0x00,                          // 16: protocol IPv4
      0x06,                                // 18: hardware address length
      0x04,                                // 19: protocol address length
      0x00, 0x03,                          // 20: opcode 3, reverse request
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // 22: sender hardware address
      0x00, 0x00, 0x00, 0x00,              // 28: sender IP
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // 32: target hardware address
      0x00, 0x00, 0x00, 0x00,              // 38: target IP
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // 42..59: padding
  };
  const RarpFrame frame = BuildRarpFrame(mac);
  for (size_t i = 0; i < kRarpFrameSize; ++i) {
    EXPECT_EQ(frame[i], expected[i]) << "byte " << i;
  }
}

TEST(RarpFrame, DependsOnlyOnTheMac) {
  const MacAddress a({0x02, 0, 0, 0, 0, 1});
  const MacAddress b({0x02, 0, 0, 0, 0, 2});
  EXPECT_EQ(BuildRarpFrame(a), BuildRarpFrame(a));
  const RarpFrame fa = BuildRarpFrame(a);
  const RarpFrame fb = BuildRarpFrame(b);
  // Exactly the three copies of the MAC's last byte differ.
  std::vector<size_t> differing;
  for (size_t i = 0; i < kRarpFrameSize; ++i) {
    if (fa[i] != fb[i]) differing.push_back(i);
  }
  EXPECT_EQ(differing, (std::vector<size_t>{11, 27, 37}));
}

}  // namespace
}  // namespace ferry
