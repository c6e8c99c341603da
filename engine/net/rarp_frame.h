#pragma once
// The frame a VM's NIC announces after migration: a RARP reverse request (RFC 903) broadcast
// from the NIC's MAC, byte-compatible with QEMU's self-announce. Switches learn the source
// MAC's new port from it; nobody is expected to answer. Layout: docs/announce.md.

#include <array>
#include <cstddef>
#include <cstdint>

#include "engine/net/mac_address.h"

namespace ferry {

inline constexpr size_t kRarpFrameSize = 60;  // Ethernet minimum without FCS
inline constexpr uint16_t kEthertypeRarp = 0x8035;
inline constexpr uint16_t kArpHardwareEthernet = 1;
inline constexpr uint16_t kArpProtocolIpv4 = 0x0800;
inline constexpr uint16_t kRarpOpReverseRequest = 3;

using RarpFrame = std::array<uint8_t, kRarpFrameSize>;

RarpFrame BuildRarpFrame(const MacAddress& mac);

}  // namespace ferry
