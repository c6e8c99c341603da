#include "engine/net/rarp_frame.h"

#include <algorithm>

namespace ferry {
namespace {

size_t PutBe16(RarpFrame& f, size_t at, uint16_t v) {
  f[at] = static_cast<uint8_t>(v >> 8);
  f[at + 1] = static_cast<uint8_t>(v);
  return at + 2;
}

size_t PutMac(RarpFrame& f, size_t at, const MacAddress& mac) {
  std::copy(mac.bytes().begin(), mac.bytes().end(), f.begin() + at);
  return at + MacAddress::kSize;
}

}  // namespace

RarpFrame BuildRarpFrame(const MacAddress& mac) {
  RarpFrame f{};  // IPs and the padding after byte 42 stay zero
  size_t at = 0;
  std::fill_n(f.begin(), MacAddress::kSize, 0xff);  // broadcast destination
  at += MacAddress::kSize;
  at = PutMac(f, at, mac);
  at = PutBe16(f, at, kEthertypeRarp);
  at = PutBe16(f, at, kArpHardwareEthernet);
  at = PutBe16(f, at, kArpProtocolIpv4);
  f[at++] = MacAddress::kSize;  // hardware address length
  f[at++] = 4;                  // IPv4 address length
  at = PutBe16(f, at, kRarpOpReverseRequest);
  at = PutMac(f, at, mac);  // sender hardware address
  at += 4;                  // sender IP 0.0.0.0
  PutMac(f, at, mac);       // target hardware address; target IP 0.0.0.0 follows
  return f;
}

}  // namespace ferry
