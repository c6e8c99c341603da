#pragma once
// Constants of the agent-to-agent migration protocol (docs/wire_protocol.md).

#include <cstdint>

namespace ferry {

// Major protocol version. Version 2 adds data connections (StartMigration.data_path); version 3
// storage migration (StartMigration.storage, DiskBlocks on the stream). A destination still serves
// version 1 and 2 sources and refuses anything else.
inline constexpr uint32_t kProtocolVersion = 3;
inline constexpr uint32_t kStorageMigrationProtocolVersion = 3;
inline constexpr uint32_t kOldestProtocolVersion = 1;
// How long a destination waits for the final round's pages once the device state arrived, with
// no page landing meanwhile.
inline constexpr int64_t kFinalPagesTimeoutMs = 30000;
// Upper bound of page data in one MemoryBatch (gRPC's default message cap is 4 MiB).
inline constexpr uint64_t kMaxBatchDataBytes = 1ull << 20;
// Size the engine assumes for device state before it has measured it (for the first estimate).
inline constexpr uint64_t kDeviceStateEstimateBytes = 64 << 10;

}  // namespace ferry
