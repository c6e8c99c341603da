#include "engine/storage/vm_config.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/base/status.h"
#include "engine/base/unique_fd.h"
#include "engine/vm/vm_spec_file.h"
#include "engine/vm/yaml_fields.h"

namespace ferry {
namespace {

const char* BackendName(Backend b) { return b == Backend::kSynthetic ? "synthetic" : "kvm"; }

}  // namespace

absl::Status CheckPathInsideVmDirectory(const std::string& relative) {
  if (relative.empty()) return absl::InvalidArgumentError("the path is empty");
  if (relative[0] == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("'", relative, "' is absolute; a disk of a VM directory is named relative to it"));
  }
  for (absl::string_view part : absl::StrSplit(relative, '/')) {
    if (part == ".." || part == "." || part.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("'", relative, "' leaves or loops in the VM directory"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<VmSpec> LoadVmConfig(const std::string& vm_dir) {
  const std::string path = (std::filesystem::path(vm_dir) / kVmConfigFile).string();
  ASSIGN_OR_RETURN(YAML::Node root, LoadYamlFile(path));
  YamlMap m(path, "", root);
  // The version first: a newer writer may have added fields this reader would call unknown.
  if (!m.Has("format_version")) {
    return m.Error("format_version", "missing (a VM directory's vm.yaml starts with format_version: 1)");
  }
  ASSIGN_OR_RETURN(uint64_t version, m.Uint("format_version", true, 0));
  if (version != kVmConfigFormatVersion) {
    return m.Error("format_version",
                   absl::StrCat(version, " is not supported: this Ferry reads format_version ", kVmConfigFormatVersion,
                                version > kVmConfigFormatVersion ? " (written by a newer Ferry)" : ""));
  }
  RETURN_IF_ERROR(m.CheckKeys({"format_version", "name", "memory", "vcpus", "backend", "workload", "cpu", "disks",
                               "nics", "image"}));
  ASSIGN_OR_RETURN(VmSpec spec, VmSpecFromYaml(m, DiskPathRule::kAsWritten));
  const std::string dir_name = std::filesystem::path(vm_dir).lexically_normal().filename().string();
  if (!dir_name.empty() && spec.name != dir_name) {
    return m.Error("name", absl::StrCat("'", spec.name, "' differs from the VM directory's name '", dir_name, "'"));
  }
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    DiskSpec& d = spec.disks[i];
    if (d.kind != DiskKind::kFile) continue;  // RDM mapping files and removable images stay as named
    if (absl::Status st = CheckPathInsideVmDirectory(d.path); !st.ok()) {
      return m.Error(absl::StrCat("disks[", i, "].path"), st.message());
    }
    d.path = (std::filesystem::path(vm_dir) / d.path).string();
  }
  spec.console_log_path = (std::filesystem::path(vm_dir) / kConsoleLogFile).string();
  return spec;
}

absl::StatusOr<std::string> FormatVmConfig(const VmSpec& spec) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "format_version" << YAML::Value << kVmConfigFormatVersion;
  out << YAML::Key << "name" << YAML::Value << spec.name;
  out << YAML::Key << "memory" << YAML::Value << spec.memory_bytes;
  out << YAML::Key << "vcpus" << YAML::Value << spec.vcpus;
  out << YAML::Key << "backend" << YAML::Value << BackendName(spec.backend);
  out << YAML::Key << "workload" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "working_set" << YAML::Value << spec.workload.working_set_bytes;
  out << YAML::Key << "dirty_rate" << YAML::Value << spec.workload.dirty_rate_mibps;
  out << YAML::Key << "pattern" << YAML::Value << spec.workload.pattern;
  out << YAML::Key << "seed" << YAML::Value << spec.workload.seed;
  out << YAML::Key << "tick_ms" << YAML::Value << spec.workload.tick_ms;
  if (spec.workload.disk_working_set_bytes > 0) {  // the guest's disk workload (docs/guest_verification.md)
    out << YAML::Key << "disk_working_set" << YAML::Value << spec.workload.disk_working_set_bytes;
    out << YAML::Key << "disk_rate" << YAML::Value << spec.workload.disk_rate_mibps;
  }
  out << YAML::EndMap;
  if (!spec.cpu.model.empty() || !spec.cpu.features.empty()) {
    out << YAML::Key << "cpu" << YAML::Value << YAML::BeginMap;
    if (!spec.cpu.model.empty()) out << YAML::Key << "model" << YAML::Value << spec.cpu.model;
    if (!spec.cpu.features.empty()) out << YAML::Key << "features" << YAML::Value << YAML::Flow << spec.cpu.features;
    out << YAML::EndMap;
  }
  if (!spec.disks.empty()) {
    out << YAML::Key << "disks" << YAML::Value << YAML::BeginSeq;
    for (size_t i = 0; i < spec.disks.size(); ++i) {
      const DiskSpec& d = spec.disks[i];
      if (d.kind == DiskKind::kFile) {
        if (absl::Status st = CheckPathInsideVmDirectory(d.path); !st.ok()) {
          return absl::InvalidArgumentError(absl::StrCat("disk ", i, ": ", st.message()));
        }
      }
      out << YAML::BeginMap << YAML::Key << "kind" << YAML::Value << DiskKindName(d.kind);
      if (!d.path.empty()) out << YAML::Key << "path" << YAML::Value << d.path;
      if (!d.device.empty()) out << YAML::Key << "device" << YAML::Value << d.device;
      if (d.size_bytes) out << YAML::Key << "size" << YAML::Value << d.size_bytes;
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  if (!spec.nics.empty()) {
    out << YAML::Key << "nics" << YAML::Value << YAML::BeginSeq;
    for (const NicSpec& n : spec.nics) {
      out << YAML::BeginMap << YAML::Key << "mac" << YAML::Value << n.mac << YAML::Key << "port_group" << YAML::Value
          << n.port_group << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  if (!spec.image_path.empty()) out << YAML::Key << "image" << YAML::Value << spec.image_path;
  out << YAML::EndMap;
  if (!out.good()) return absl::InternalError(absl::StrCat("cannot write vm.yaml: ", out.GetLastError()));
  return absl::StrCat("# Ferry VM configuration (docs/datastores.md)\n", out.c_str(), "\n");
}

absl::Status WriteVmConfig(const std::string& vm_dir, const VmSpec& spec) {
  ASSIGN_OR_RETURN(std::string text, FormatVmConfig(spec));
  const std::string path = (std::filesystem::path(vm_dir) / kVmConfigFile).string();
  const std::string tmp = path + ".new";
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return ErrnoError(absl::StrCat("cannot create ", tmp));
  if (write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) || fsync(fd.get()) != 0) {
    absl::Status st = ErrnoError(absl::StrCat("cannot write ", tmp));
    unlink(tmp.c_str());
    return st;
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status st = ErrnoError(absl::StrCat("cannot rename ", tmp, " to ", path));
    unlink(tmp.c_str());
    return st;
  }
  return absl::OkStatus();
}

}  // namespace ferry
