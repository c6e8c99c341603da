#include "engine/agent/vm_announce.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/host_facts_source.h"
#include "engine/net/port_group_interface.h"

namespace ferry {

AnnounceResult AnnounceVmNics(const AgentConfig& config, const VmSpec& vm) {
  AnnounceResult result;
  if (vm.nics.empty()) return result;
  PortGroupInterfaces table;
  auto facts = AgentHostFacts(config);
  if (facts.ok()) {
    for (const auto& sw : facts->vswitches) {
      for (const auto& pg : sw.port_groups) table[pg] = sw.name;
    }
  } else {
    result.warnings.push_back(absl::StrCat("no host facts to map port groups: ", facts.status().message()));
  }
  std::vector<NicToAnnounce> nics;
  for (const auto& n : vm.nics) nics.push_back({n.mac, n.port_group});
  AnnouncePlan plan = PlanAnnouncements(nics, table);
  std::vector<std::string> warnings = plan.warnings;
  if (!plan.targets.empty()) {
    auto announcer = Announcer::Start(plan.targets, AnnounceSchedule{});
    if (announcer.ok()) {
      result = (*announcer)->Wait();
    } else {
      warnings.push_back(std::string(announcer.status().message()));
    }
  }
  result.warnings.insert(result.warnings.begin(), warnings.begin(), warnings.end());
  for (const auto& t : plan.targets) {
    spdlog::info("event=rarp_announced vm={} mac={} interface={}", vm.name, t.mac.ToString(), t.interface);
  }
  for (const auto& w : result.warnings) spdlog::warn("event=rarp_warning vm={} warning=\"{}\"", vm.name, w);
  return result;
}

}  // namespace ferry
