#pragma once
// The two guests the VMM-upgrade suites (VmmUpgrade, VmmUpgradeLock, VmmUpgradeDisks) move: a
// synthetic one, and a KVM guest running its disk workload on a sparse file disk.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "engine/vm/multiboot_loader.h"
#include "engine/vm/vm.h"

namespace ferry::vmm_test {

inline constexpr uint64_t kUpgradeMiB = 1ull << 20;

inline VmSpec UpgradeSyntheticSpec(const std::string& name) {
  VmSpec s;
  s.name = name;
  s.backend = Backend::kSynthetic;
  s.memory_bytes = 32 * kUpgradeMiB;
  s.workload.working_set_bytes = 4 * kUpgradeMiB;
  s.workload.dirty_rate_mibps = 40;
  return s;
}

// Creates `disk_path` (sparse, `disk_bytes`) as the guest's first disk.
inline VmSpec UpgradeKvmSpecWithDisk(const std::string& name, const std::string& disk_path, uint64_t disk_bytes) {
  VmSpec s;
  s.name = name;
  s.memory_bytes = 64 * kUpgradeMiB;
  s.vcpus = 2;  // the disk workload runs on the last worker
  s.workload.working_set_bytes = 8 * kUpgradeMiB;
  s.workload.dirty_rate_mibps = 20;
  s.workload.disk_working_set_bytes = 2 * kUpgradeMiB;
  s.workload.disk_rate_mibps = 4;
  s.image_path = DefaultGuestImagePath();
  int fd = open(disk_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  EXPECT_GE(fd, 0) << disk_path;
  EXPECT_EQ(ftruncate(fd, static_cast<off_t>(disk_bytes)), 0) << disk_path;
  close(fd);
  s.disks.push_back(DiskSpec{DiskKind::kFile, disk_path, "", disk_bytes});
  return s;
}

}  // namespace ferry::vmm_test
