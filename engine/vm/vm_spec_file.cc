#include "engine/vm/vm_spec_file.h"

#include "engine/vm/vm_name.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/base/status.h"
#include "engine/vm/yaml_fields.h"

namespace ferry {
namespace {

absl::Status LoadWorkload(const YamlMap& m, WorkloadSpec& w) {
  RETURN_IF_ERROR(
      m.CheckKeys({"working_set", "dirty_rate", "pattern", "seed", "tick_ms", "disk_working_set", "disk_rate"}));
  ASSIGN_OR_RETURN(w.working_set_bytes, m.ByteSize("working_set", false, w.working_set_bytes));
  ASSIGN_OR_RETURN(w.dirty_rate_mibps, m.Rate("dirty_rate", w.dirty_rate_mibps));
  ASSIGN_OR_RETURN(std::string pattern, m.String("pattern", false));
  if (!pattern.empty()) {
    if (pattern != "sequential" && pattern != "random" && pattern != "hotcold") {
      return m.Error("pattern", absl::StrCat("'", pattern, "' is not sequential, random or hotcold"));
    }
    w.pattern = pattern;
  }
  ASSIGN_OR_RETURN(w.seed, m.Uint("seed", false, w.seed));
  ASSIGN_OR_RETURN(uint64_t tick, m.Uint("tick_ms", false, w.tick_ms));
  w.tick_ms = static_cast<uint32_t>(tick);
  ASSIGN_OR_RETURN(w.disk_working_set_bytes, m.ByteSize("disk_working_set", false, w.disk_working_set_bytes));
  ASSIGN_OR_RETURN(w.disk_rate_mibps, m.Rate("disk_rate", w.disk_rate_mibps));
  return absl::OkStatus();
}

absl::StatusOr<DiskSpec> LoadDisk(const YamlMap& m, DiskPathRule rule) {
  RETURN_IF_ERROR(m.CheckKeys({"kind", "path", "device", "size"}));
  DiskSpec d;
  ASSIGN_OR_RETURN(std::string kind, m.String("kind", true));
  if (kind == "file") {
    d.kind = DiskKind::kFile;
  } else if (kind == "rdm") {
    d.kind = DiskKind::kRdm;
  } else if (kind == "cdrom") {
    d.kind = DiskKind::kCdrom;
  } else if (kind == "floppy") {
    d.kind = DiskKind::kFloppy;
  } else {
    return m.Error("kind", absl::StrCat("'", kind, "' is not file, rdm, cdrom or floppy"));
  }
  bool removable = d.kind == DiskKind::kCdrom || d.kind == DiskKind::kFloppy;
  ASSIGN_OR_RETURN(d.path, m.String("path", !removable));
  ASSIGN_OR_RETURN(d.device, m.String("device", d.kind == DiskKind::kRdm));
  if (d.kind != DiskKind::kRdm && !d.device.empty()) {
    return m.Error("device", "only an rdm disk has a host device");
  }
  ASSIGN_OR_RETURN(d.size_bytes, m.ByteSize("size", false, 0));
  if (rule == DiskPathRule::kAbsolute && !d.path.empty() && d.path[0] != '/') {
    return m.Error("path", absl::StrCat("'", d.path, "' is not an absolute path"));
  }
  if (!d.device.empty() && d.device[0] != '/') {
    return m.Error("device", absl::StrCat("'", d.device, "' is not an absolute path (e.g. /dev/sdb)"));
  }
  return d;
}

}  // namespace

const char* DiskKindName(DiskKind kind) {
  switch (kind) {
    case DiskKind::kFile: return "file";
    case DiskKind::kRdm: return "rdm";
    case DiskKind::kCdrom: return "cdrom";
    case DiskKind::kFloppy: return "floppy";
  }
  return "unknown";
}

absl::Status ValidateMac(absl::string_view mac) {
  std::vector<absl::string_view> parts = absl::StrSplit(mac, ':');
  uint8_t first = 0;
  bool all_zero = true;
  for (size_t i = 0; i < parts.size(); ++i) {
    bool hex = parts[i].size() == 2 && absl::ascii_isxdigit(parts[i][0]) && absl::ascii_isxdigit(parts[i][1]);
    if (parts.size() != 6 || !hex) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", mac, "' is not a MAC address (six hex pairs, e.g. 52:54:00:12:34:56)"));
    }
    uint8_t v = static_cast<uint8_t>(std::stoi(std::string(parts[i]), nullptr, 16));
    if (i == 0) first = v;
    all_zero = all_zero && v == 0;
  }
  if (all_zero) return absl::InvalidArgumentError(absl::StrCat("'", mac, "' is the all-zero MAC"));
  if (first & 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", mac, "' is a multicast MAC (lowest bit of the first byte set); a NIC needs a unicast one"));
  }
  return absl::OkStatus();
}

absl::StatusOr<VmSpec> LoadVmSpecFile(const std::string& path) {
  ASSIGN_OR_RETURN(YAML::Node root, LoadYamlFile(path));
  YamlMap m(path, "", root);
  RETURN_IF_ERROR(m.CheckKeys({"name", "memory", "vcpus", "backend", "workload", "cpu", "disks",
                               "nics", "image", "console_log"}));
  return VmSpecFromYaml(m, DiskPathRule::kAbsolute);
}

absl::StatusOr<VmSpec> VmSpecFromYaml(const YamlMap& m, DiskPathRule disk_paths) {
  VmSpec vm;
  ASSIGN_OR_RETURN(vm.name, m.String("name", true));
  if (absl::Status st = ValidateVmName(vm.name); !st.ok()) return m.Error("name", std::string(st.message()));
  ASSIGN_OR_RETURN(vm.memory_bytes, m.ByteSize("memory", false, vm.memory_bytes));
  if (vm.memory_bytes == 0 || vm.memory_bytes % 4096 != 0) {
    return m.Error("memory", "must be a positive multiple of 4KiB");
  }
  ASSIGN_OR_RETURN(uint64_t vcpus, m.Uint("vcpus", false, vm.vcpus));
  if (vcpus == 0 || vcpus > 255) return m.Error("vcpus", "must be 1..255");
  vm.vcpus = static_cast<uint32_t>(vcpus);
  ASSIGN_OR_RETURN(std::string backend, m.String("backend", false));
  if (backend == "kvm" || backend.empty()) {
    vm.backend = Backend::kKvm;
  } else if (backend == "synthetic") {
    vm.backend = Backend::kSynthetic;
  } else {
    return m.Error("backend", absl::StrCat("'", backend, "' is not kvm or synthetic"));
  }
  ASSIGN_OR_RETURN(YamlMap workload, m.Map("workload", false));
  RETURN_IF_ERROR(LoadWorkload(workload, vm.workload));

  ASSIGN_OR_RETURN(YamlMap cpu, m.Map("cpu", false));
  RETURN_IF_ERROR(cpu.CheckKeys({"model", "features"}));
  ASSIGN_OR_RETURN(vm.cpu.model, cpu.String("model", false));
  ASSIGN_OR_RETURN(vm.cpu.features, cpu.StringList("features"));

  ASSIGN_OR_RETURN(std::vector<YamlMap> disks, m.MapList("disks"));
  for (const YamlMap& d : disks) {
    ASSIGN_OR_RETURN(DiskSpec disk, LoadDisk(d, disk_paths));
    vm.disks.push_back(std::move(disk));
  }
  ASSIGN_OR_RETURN(std::vector<YamlMap> nics, m.MapList("nics"));
  for (const YamlMap& n : nics) {
    RETURN_IF_ERROR(n.CheckKeys({"mac", "port_group"}));
    NicSpec nic;
    ASSIGN_OR_RETURN(nic.mac, n.String("mac", true));
    if (absl::Status st = ValidateMac(nic.mac); !st.ok()) return n.Error("mac", st.message());
    nic.mac = absl::AsciiStrToLower(nic.mac);
    ASSIGN_OR_RETURN(nic.port_group, n.String("port_group", true));
    for (const NicSpec& other : vm.nics) {
      if (other.mac == nic.mac) return n.Error("mac", absl::StrCat(nic.mac, " is used by another NIC"));
    }
    vm.nics.push_back(std::move(nic));
  }
  ASSIGN_OR_RETURN(vm.image_path, m.String("image", false));
  ASSIGN_OR_RETURN(vm.console_log_path, m.String("console_log", false));
  return vm;
}

}  // namespace ferry
