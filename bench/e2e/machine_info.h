#pragma once
// The machine a benchmark ran on, from /proc and /sys.

#include "bench/e2e/bench_record.h"

namespace ferry::bench {

MachineRecord DescribeMachine();
// MemAvailable from /proc/meminfo, in bytes (0 if unreadable).
uint64_t AvailableMemoryBytes();

}  // namespace ferry::bench
