#include "engine/agent/vm_directory.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/vm/vm_name.h"

namespace ferry {

absl::StatusOr<VmDirectoryClaim> VmDirectoryClaim::Create(const AgentConfig& config, const std::string& vm_name) {
  RETURN_IF_ERROR(ValidateVmName(vm_name));
  if (config.data_dir.empty()) return VmDirectoryClaim("", "", false);
  const std::filesystem::path vms = std::filesystem::path(config.data_dir) / "vms";
  const std::filesystem::path dir = vms / vm_name;
  // A valid name is one component: the directory is a direct child of DATA_DIR/vms.
  if (dir.parent_path() != vms || dir.filename() != vm_name) {
    return absl::InvalidArgumentError("VM name is not a single path component");
  }
  std::error_code ec;
  std::filesystem::create_directories(vms, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", vms.string(), ": ", ec.message()));
  const bool created = std::filesystem::create_directory(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
  return VmDirectoryClaim(dir.string(), (dir / "console.log").string(), created);
}

VmDirectoryClaim::VmDirectoryClaim(VmDirectoryClaim&& other) noexcept
    : dir_(std::move(other.dir_)), console_log_path_(std::move(other.console_log_path_)), created_(other.created_) {
  other.created_ = false;
}

VmDirectoryClaim::~VmDirectoryClaim() {
  if (!created_) return;
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace ferry
