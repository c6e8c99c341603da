#include "engine/agent/host_facts_source.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/sysinfo.h>

#include <fstream>

#include "engine/host/host_file.h"
#include "engine/host/local_host.h"

namespace ferry {
namespace {

// The interface carrying `address` and its speed from sysfs; 0 when unknown (loopback and many
// virtual NICs report none).
uint32_t LinkSpeedOf(const std::string& address) {
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) != 0) return 0;
  std::string name;
  for (ifaddrs* i = ifs; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof(buf));
    if (address == buf) name = i->ifa_name;
  }
  freeifaddrs(ifs);
  if (name.empty()) return 0;
  std::ifstream in("/sys/class/net/" + name + "/speed");
  long speed = 0;
  if (!(in >> speed) || speed <= 0) return 0;
  return static_cast<uint32_t>(speed);
}

}  // namespace

absl::StatusOr<HostFacts> AgentHostFacts(const AgentConfig& config) {
  HostFacts facts;
  if (!config.host_facts.empty()) {
    // The agent owns its host's view of the datastores: it writes an id into one that has none.
    auto loaded = LoadHostFacts(config.host_facts, DatastoreIdPolicy::kCreateIfMissing);
    if (!loaded.ok()) return loaded.status();
    facts = *loaded;
  } else {
    LocalCpu cpu = ProbeLocalCpu();
    facts.cpu_vendor = cpu.vendor;
    facts.cpu_features = cpu.features;
    facts.kvm_capabilities = ProbeLocalKvmCapabilities();
    struct sysinfo si {};
    if (sysinfo(&si) == 0) {
      facts.memory_total_bytes = uint64_t{si.totalram} * si.mem_unit;
      facts.memory_free_bytes = (uint64_t{si.freeram} + si.bufferram) * si.mem_unit;
    }
    // The agent's own listen address is where peers reach it: that is its migration interface.
    std::string host = config.listen.substr(0, config.listen.rfind(':'));
    if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
    facts.migration_interface = MigrationInterfaceFacts{host, LinkSpeedOf(host)};
  }
  facts.name = config.name;
  return facts;
}

}  // namespace ferry
