#pragma once
// What a host offers a VM: the facts a precheck compares. Plain data; host.proto's
// ferry.v1.HostFacts is its wire form (host_facts_proto.h).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ferry {

struct DatastoreFacts {
  std::string name;
  std::string path;  // where this host mounts it
  std::string uuid;  // identity stored inside the datastore: equal uuid = the same storage; "" = none yet
  bool read_only = false;  // mounted read-only on this host
};

struct VirtualSwitchFacts {
  std::string name;
  std::vector<std::string> uplinks;  // empty: internal-only, nothing leaves the host
  std::vector<std::string> port_groups;
};

struct MigrationInterfaceFacts {
  std::string address;
  uint32_t link_speed_mbps = 0;
};

// Whether this host can open one of a VM's disk paths (the path as the VM spec names it).
struct DiskAccessFacts {
  std::string path;
  bool accessible = false;
  std::string error;
};

struct HostFacts {
  std::string name;
  // The host file or libvirt:URI these facts were loaded from, as given (what `migrate host
  // cpu-baseline` takes); "" for facts that came from an agent. Not sent on the wire.
  std::string origin;
  std::string cpu_vendor;                 // "GenuineIntel", "AuthenticAMD"
  std::vector<std::string> cpu_features;  // libvirt names, sorted
  uint64_t memory_total_bytes = 0;
  uint64_t memory_free_bytes = 0;
  std::vector<DatastoreFacts> datastores;
  std::vector<VirtualSwitchFacts> vswitches;
  std::vector<std::string> rdm_devices;  // host block devices that can back an RDM
  std::optional<MigrationInterfaceFacts> migration_interface;
  std::vector<std::string> kvm_capabilities;  // names of KVM_CAP_* present
  std::vector<DiskAccessFacts> disk_access;   // filled by ProbeDiskAccess
};

// The datastore holding `path` (longest mount path that is a directory prefix of it), or null.
const DatastoreFacts* DatastoreOf(const HostFacts& host, const std::string& path);
const DatastoreFacts* DatastoreByUuid(const HostFacts& host, const std::string& uuid);
// The switch carrying port group `name`, or null.
const VirtualSwitchFacts* SwitchOfPortGroup(const HostFacts& host, const std::string& name);

}  // namespace ferry
