#pragma once
// Which CLOCK_MONOTONIC a stamp was taken on. Two processes read the same monotonic clock exactly
// when they run under the same kernel boot, so the kernel's boot id names the clock: a stamp
// taken on another host (or before a reboot) is meaningless here.

#include <string>

namespace ferry {

// /proc/sys/kernel/random/boot_id, read once; empty when the kernel does not offer it (then no
// stamp from elsewhere is ever trusted).
const std::string& MonotonicClockId();

}  // namespace ferry
