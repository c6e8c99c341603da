#pragma once
// What a VM is: sizes, the guest workload, CPU model, disks and NICs. Plain data; the proto
// form (ferry.v1.VmSpec) and the YAML spec file convert to and from it.

#include <cstdint>
#include <string>
#include <vector>

namespace ferry {

enum class Backend { kKvm = 1, kSynthetic = 2 };

// The built-in guest's workload, passed on the multiboot command line as
// "ws=<MiB> rate=<MiB/s> pattern=<sequential|random|hotcold> seed=<n> tick_ms=<n>", plus
// "disk_ws=<MiB> disk_rate=<MiB/s>" when the guest also exercises its first disk.
struct WorkloadSpec {
  uint64_t working_set_bytes = 64ull << 20;
  double dirty_rate_mibps = 50;  // 0 = unlimited
  std::string pattern = "random";
  uint64_t seed = 1;
  uint32_t tick_ms = 0;  // 0 = no '.' ticks on serial
  // The disk workload on the VM's first disk (docs/guest_verification.md): blocks written, read
  // back and verified. 0 = no disk I/O. Whole MiB.
  uint64_t disk_working_set_bytes = 0;
  double disk_rate_mibps = 4;  // blocks written per second, in MiB/s; 0 = unlimited
};

// The guest's CPU: a named model (libvirt CPU map name or x86-64-v2/v3/v4) and/or explicit
// features. Both empty means the source host's KVM-supported set.
struct CpuSpec {
  std::string model;
  std::vector<std::string> features;
};

enum class DiskKind { kFile = 1, kRdm = 2, kCdrom = 3, kFloppy = 4 };

struct DiskSpec {
  DiskKind kind = DiskKind::kFile;
  std::string path;          // file disk / RDM mapping file / cdrom-floppy image (empty = no media)
  std::string device;        // RDM only: the host block device (e.g. /dev/sdb or a by-id name)
  uint64_t size_bytes = 0;   // file disk: expected size, 0 = any
  // File disk: this host wrote its content (a storage migration's destination copied it), so this
  // host's page cache of it is coherent and restoring the VM keeps it (docs/storage_migration.md).
  bool filled_by_this_host = false;
};

struct NicSpec {
  std::string mac;         // "52:54:00:12:34:56"
  std::string port_group;  // name of a port group on the host's virtual switches
};

struct VmSpec {
  std::string name;
  Backend backend = Backend::kKvm;
  uint64_t memory_bytes = 256ull << 20;
  uint32_t vcpus = 1;
  WorkloadSpec workload;
  CpuSpec cpu;
  std::vector<DiskSpec> disks;
  std::vector<NicSpec> nics;
  std::string image_path;        // empty: ferry-guest.elf beside the running binary
  std::string console_log_path;  // empty: no log file
  bool console_to_stdout = false;
};

// "ws=64 rate=50 pattern=random seed=1 tick_ms=0" (+ " disk_ws=16 disk_rate=4" with a disk workload)
std::string GuestCommandLine(const WorkloadSpec& w);

}  // namespace ferry
