#pragma once
// Constants of the agent-to-agent migration protocol (docs/wire_protocol.md).

#include <cstdint>

namespace ferry {

// Major protocol version; a peer speaking another one is refused at Start.
inline constexpr uint32_t kProtocolVersion = 1;
// Upper bound of page data in one MemoryBatch (gRPC's default message cap is 4 MiB).
inline constexpr uint64_t kMaxBatchDataBytes = 1ull << 20;
// Size the engine assumes for device state before it has measured it (for the first estimate).
inline constexpr uint64_t kDeviceStateEstimateBytes = 64 << 10;

}  // namespace ferry
