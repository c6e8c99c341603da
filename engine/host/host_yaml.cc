#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/host/cpu_model.h"
#include "engine/host/datastore_id.h"
#include "engine/host/host_file.h"
#include "engine/host/local_host.h"
#include "engine/kvm/cpu_features.h"
#include "engine/vm/yaml_fields.h"

namespace ferry {
namespace {

absl::Status LoadCpu(const YamlMap& m, HostFacts& h) {
  RETURN_IF_ERROR(m.CheckKeys({"vendor", "model", "features", "mask"}));
  ASSIGN_OR_RETURN(std::string model, m.String("model", false));
  ASSIGN_OR_RETURN(std::vector<std::string> features, m.StringList("features"));
  ASSIGN_OR_RETURN(std::vector<std::string> mask, m.StringList("mask"));
  ASSIGN_OR_RETURN(std::string vendor, m.String("vendor", false));
  std::set<std::string> set;
  if (model.empty() && features.empty()) {
    // The default: what this machine's KVM offers guests.
    LocalCpu local = ProbeLocalCpu();
    set.insert(local.features.begin(), local.features.end());
    h.cpu_vendor = local.vendor;
  } else if (!model.empty()) {
    auto expanded = ExpandCpuModel(model);
    if (!expanded.ok()) return m.Error("model", expanded.status().message());
    set.insert(expanded->begin(), expanded->end());
  }
  for (size_t i = 0; i < features.size(); ++i) {
    if (FindCpuFeature(features[i]) == nullptr) {
      return m.Error(absl::StrCat("features[", i, "]"), absl::StrCat("unknown CPU feature '", features[i], "'"));
    }
    set.insert(features[i]);
  }
  for (size_t i = 0; i < mask.size(); ++i) {
    if (FindCpuFeature(mask[i]) == nullptr) {
      return m.Error(absl::StrCat("mask[", i, "]"), absl::StrCat("unknown CPU feature '", mask[i], "'"));
    }
    set.erase(mask[i]);
  }
  if (!vendor.empty()) h.cpu_vendor = vendor;
  h.cpu_features.assign(set.begin(), set.end());
  return absl::OkStatus();
}

absl::Status LoadKvm(const YamlMap& m, HostFacts& h) {
  std::vector<std::string> known = RequiredKvmCapabilityNames();
  auto check = [&](const std::vector<std::string>& names, const char* key) -> absl::Status {
    for (size_t i = 0; i < names.size(); ++i) {
      if (std::find(known.begin(), known.end(), names[i]) == known.end()) {
        return m.Error(absl::StrCat(key, "[", i, "]"),
                       absl::StrCat("'", names[i], "' is not a KVM capability Ferry uses"));
      }
    }
    return absl::OkStatus();
  };
  ASSIGN_OR_RETURN(std::vector<std::string> caps, m.StringList("kvm_capabilities"));
  ASSIGN_OR_RETURN(std::vector<std::string> mask, m.StringList("kvm_capabilities_mask"));
  RETURN_IF_ERROR(check(caps, "kvm_capabilities"));
  RETURN_IF_ERROR(check(mask, "kvm_capabilities_mask"));
  if (!m.Has("kvm_capabilities")) caps = ProbeLocalKvmCapabilities();
  for (const std::string& c : caps) {
    if (std::find(mask.begin(), mask.end(), c) == mask.end()) h.kvm_capabilities.push_back(c);
  }
  return absl::OkStatus();
}

// A libvirt URI or a libvirt node description where a YAML host file was expected: say how to
// write it instead of failing to read or parse it.
absl::Status CheckNotLibvirt(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    if (path.find("://") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a file; a libvirt URI is written libvirt:",
                                                     path));
    }
    return absl::OkStatus();  // LoadYamlFile names the missing file
  }
  char first = 0;
  in >> first;  // skips whitespace
  if (first == '<') {
    std::error_code ec;
    std::string abs = std::filesystem::absolute(path, ec).string();
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is XML, not a YAML host file; a libvirt node description is read by libvirt's test driver: "
              "libvirt:test://", abs));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<HostFacts> LoadHostFactsYaml(const std::string& path, DatastoreIdPolicy datastore_ids) {
  RETURN_IF_ERROR(CheckNotLibvirt(path));
  ASSIGN_OR_RETURN(YAML::Node root, LoadYamlFile(path));
  YamlMap m(path, "", root);
  RETURN_IF_ERROR(m.CheckKeys({"name", "cpu", "memory", "datastores", "vswitches", "rdm_devices",
                               "migration_interface", "kvm_capabilities", "kvm_capabilities_mask"}));
  HostFacts h;
  ASSIGN_OR_RETURN(h.name, m.String("name", true));
  if (h.name.empty()) return m.Error("name", "must not be empty");

  ASSIGN_OR_RETURN(YamlMap cpu, m.Map("cpu", false));
  RETURN_IF_ERROR(LoadCpu(cpu, h));

  ASSIGN_OR_RETURN(YamlMap memory, m.Map("memory", true));
  RETURN_IF_ERROR(memory.CheckKeys({"total", "free"}));
  ASSIGN_OR_RETURN(h.memory_total_bytes, memory.ByteSize("total", true, 0));
  ASSIGN_OR_RETURN(h.memory_free_bytes, memory.ByteSize("free", false, h.memory_total_bytes));
  if (h.memory_free_bytes > h.memory_total_bytes) return memory.Error("free", "is more than total");

  ASSIGN_OR_RETURN(std::vector<YamlMap> datastores, m.MapList("datastores"));
  for (const YamlMap& d : datastores) {
    RETURN_IF_ERROR(d.CheckKeys({"name", "path"}));
    DatastoreFacts ds;
    ASSIGN_OR_RETURN(ds.name, d.String("name", true));
    ASSIGN_OR_RETURN(ds.path, d.String("path", true));
    if (ds.path.empty() || ds.path[0] != '/') return d.Error("path", "must be an absolute path");
    auto id = IdentifyDatastore(ds.path, datastore_ids);
    if (!id.ok()) return d.Error("path", id.status().message());
    ds.uuid = id->uuid;
    ds.read_only = id->read_only;
    h.datastores.push_back(std::move(ds));
  }

  ASSIGN_OR_RETURN(std::vector<YamlMap> switches, m.MapList("vswitches"));
  for (const YamlMap& s : switches) {
    RETURN_IF_ERROR(s.CheckKeys({"name", "uplinks", "port_groups"}));
    VirtualSwitchFacts sw;
    ASSIGN_OR_RETURN(sw.name, s.String("name", true));
    ASSIGN_OR_RETURN(sw.uplinks, s.StringList("uplinks"));
    ASSIGN_OR_RETURN(sw.port_groups, s.StringList("port_groups"));
    h.vswitches.push_back(std::move(sw));
  }

  ASSIGN_OR_RETURN(h.rdm_devices, m.StringList("rdm_devices"));

  if (m.Has("migration_interface")) {
    ASSIGN_OR_RETURN(YamlMap mi, m.Map("migration_interface", true));
    RETURN_IF_ERROR(mi.CheckKeys({"address", "link_speed_mbps"}));
    MigrationInterfaceFacts iface;
    ASSIGN_OR_RETURN(iface.address, mi.String("address", true));
    ASSIGN_OR_RETURN(uint64_t speed, mi.Uint("link_speed_mbps", true, 0));
    iface.link_speed_mbps = static_cast<uint32_t>(speed);
    h.migration_interface = iface;
  }
  RETURN_IF_ERROR(LoadKvm(m, h));
  return h;
}

absl::StatusOr<HostFacts> LoadHostFacts(const std::string& spec, DatastoreIdPolicy datastore_ids) {
  absl::StatusOr<HostFacts> facts = absl::StartsWith(spec, "libvirt:")
                                        ? LoadHostFactsLibvirt(spec.substr(8), datastore_ids)
                                        : LoadHostFactsYaml(spec, datastore_ids);
  if (facts.ok()) facts->origin = spec;
  return facts;
}

}  // namespace ferry
