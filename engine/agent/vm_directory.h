#pragma once
// DATA_DIR/vms/NAME, the directory of a VM created or arriving here (its console log). A claim
// removes the directory again unless the VM ends up running here, so a refused or failed start
// leaves nothing behind; a name that is not a single safe path component is refused first.

#include <string>

#include "absl/status/statusor.h"
#include "engine/agent/agent_config.h"

namespace ferry {

class VmDirectoryClaim {
 public:
  // Creates DATA_DIR/vms/NAME when absent. With no data_dir there is no directory and no log.
  static absl::StatusOr<VmDirectoryClaim> Create(const AgentConfig& config, const std::string& vm_name);
  VmDirectoryClaim(VmDirectoryClaim&& other) noexcept;
  VmDirectoryClaim& operator=(VmDirectoryClaim&&) = delete;
  VmDirectoryClaim(const VmDirectoryClaim&) = delete;
  ~VmDirectoryClaim();

  // "" when the agent has no data_dir.
  const std::string& console_log_path() const { return console_log_path_; }
  // The VM runs here: the directory stays.
  void Keep() { created_ = false; }

 private:
  VmDirectoryClaim(std::string dir, std::string console_log_path, bool created)
      : dir_(std::move(dir)), console_log_path_(std::move(console_log_path)), created_(created) {}

  std::string dir_;
  std::string console_log_path_;
  bool created_ = false;  // removed on destruction unless kept
};

}  // namespace ferry
