#pragma once
// The physical limit of this machine's loopback: raw TCP, 1 MiB writes from one thread per
// connection into one reader thread per connection, for a fixed time. Migration throughput is
// reported as a ratio to this figure, measured in the same invocation.

#include <chrono>

#include "absl/status/statusor.h"
#include "bench/e2e/bench_record.h"

namespace ferry::bench {

absl::StatusOr<TcpBaseline> MeasureLoopbackTcp(int connections, std::chrono::milliseconds duration);

}  // namespace ferry::bench
