#include "bench/e2e/machine_info.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace ferry::bench {
namespace {

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

uint64_t MeminfoBytes(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::istringstream fields(line.substr(key.size() + 1));
    uint64_t kib = 0;
    fields >> kib;
    return kib * 1024;
  }
  return 0;
}

}  // namespace

uint64_t AvailableMemoryBytes() { return MeminfoBytes("MemAvailable"); }

MachineRecord DescribeMachine() {
  MachineRecord m;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (m.cpu_model.empty() && line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) m.cpu_model = line.substr(colon + 2);
    }
    if (line.rfind("flags", 0) == 0 && line.find(" hypervisor") != std::string::npos) m.hypervisor = true;
  }
  m.cores = static_cast<int>(std::thread::hardware_concurrency());
  utsname u{};
  if (uname(&u) == 0) {
    m.kernel = std::string(u.sysname) + " " + u.release + " " + u.version;
    m.hostname = u.nodename;
  }
  m.memory_bytes = MeminfoBytes("MemTotal");
  m.memory_available_bytes = AvailableMemoryBytes();
  m.kvm_present = access("/dev/kvm", R_OK | W_OK) == 0;
  for (const char* p : {"/sys/module/kvm_intel/parameters/nested", "/sys/module/kvm_amd/parameters/nested"}) {
    std::string v = ReadFirstLine(p);
    if (!v.empty()) {
      m.nested_param = v;
      break;
    }
  }
  m.kvm_nested = m.kvm_present && m.hypervisor;
  std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  m.timestamp_utc = buf;
  return m;
}

}  // namespace ferry::bench
