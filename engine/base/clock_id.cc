#include "engine/base/clock_id.h"

#include <fstream>

namespace ferry {

const std::string& MonotonicClockId() {
  static const std::string id = [] {
    std::string s;
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::getline(in, s);
    return s;
  }();
  return id;
}

}  // namespace ferry
