#include "engine/precheck/precheck.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "engine/host/datastore_id.h"
#include "engine/host/local_host.h"
#include "engine/vm/vm_spec_file.h"

namespace ferry {
namespace {

class Checker {
 public:
  Checker(const VmSpec& vm, const HostFacts& src, const HostFacts& dst, const PrecheckAdvice& advice,
          const StorageMove* storage)
      : vm_(vm), src_(src), dst_(dst), advice_(advice), storage_(storage) {}

  std::vector<Finding> Run() {
    CheckCpu();
    CheckMemory();
    CheckMigrationInterfaces();
    CheckKvm();
    for (size_t i = 0; i < vm_.disks.size(); ++i) CheckDisk(vm_.disks[i]);
    for (size_t i = 0; i < vm_.nics.size(); ++i) CheckNic(vm_.nics[i], i);
    if (storage_) CheckStorageTarget();
    return std::move(out_);
  }

 private:
  void Add(Severity s, FindingCode c, std::string subject, std::string message) {
    out_.push_back(Finding{s, c, std::move(subject), std::move(message)});
  }
  void Error(FindingCode c, std::string subject, std::string message) {
    Add(Severity::kError, c, std::move(subject), std::move(message));
  }

  void CheckCpu() {
    bool pinned = !vm_.cpu.model.empty() || !vm_.cpu.features.empty();
    if (!vm_.cpu.model.empty() && vm_.cpu.features.empty()) {
      // Never a silent pass: an unexpanded model says nothing about what the guest sees.
      Error(FindingCode::kCpuFeatureMissing, vm_.cpu.model,
            absl::StrCat("the VM's CPU model '", vm_.cpu.model,
                         "' was not expanded to features (ResolveVmCpu); load the spec with "
                         "`migrate precheck` or resolve the model before checking"));
    }
    const std::vector<std::string>& guest = pinned ? vm_.cpu.features : src_.cpu_features;
    std::set<std::string> have(dst_.cpu_features.begin(), dst_.cpu_features.end());
    for (const std::string& f : guest) {
      if (have.count(f)) continue;
      Error(FindingCode::kCpuFeatureMissing, f,
            absl::StrCat("the guest was given CPUID feature '", f, "' but ", dst_.name,
                         "'s CPU (as its KVM offers it) lacks it; a running guest may be using it. ",
                         pinned ? "Pin the VM to " : "The VM has the source host's full CPU; give it ",
                         BaselineAdvice(), " and restart it, or choose a destination with '", f, "'"));
    }
    if (!src_.cpu_vendor.empty() && !dst_.cpu_vendor.empty() && src_.cpu_vendor != dst_.cpu_vendor) {
      Add(Severity::kWarning, FindingCode::kCpuVendorMismatch, "cpu vendor",
          absl::StrCat(src_.name, " is ", src_.cpu_vendor, " and ", dst_.name, " is ", dst_.cpu_vendor,
                       "; a guest that read the vendor at boot may pick vendor-specific code paths. "
                       "Prefer a destination of the same vendor"));
    }
  }

  // The model to pin to when the caller knows it, and a command that runs as printed: the hosts'
  // own host files when the facts came from them (facts from agents name no file here).
  std::string BaselineAdvice() const {
    std::string model = advice_.common_cpu_model.empty()
                            ? "a CPU model both hosts support"
                            : absl::StrCat("CPU model ", advice_.common_cpu_model, ", the newest both hosts support");
    if (!src_.origin.empty() && !dst_.origin.empty()) {
      return absl::StrCat(model, " (`migrate host cpu-baseline ", src_.origin, " ", dst_.origin,
                          "` shows it and what each host loses)");
    }
    if (!advice_.common_cpu_model.empty()) return model;
    return absl::StrCat(model, " (`migrate host cpu-baseline HOSTFILE HOSTFILE` on copies of both hosts' host "
                               "files prints one)");
  }

  void CheckMemory() {
    if (dst_.memory_free_bytes >= vm_.memory_bytes) return;
    Error(FindingCode::kInsufficientMemory, "memory",
          absl::StrCat("the VM needs ", vm_.memory_bytes >> 20, " MiB but ", dst_.name, " has ",
                       dst_.memory_free_bytes >> 20, " MiB free; free memory on ", dst_.name,
                       " (stop or move other VMs) or choose another destination"));
  }

  void CheckMigrationInterfaces() {
    for (const HostFacts* h : {&src_, &dst_}) {
      if (!h->migration_interface || h->migration_interface->address.empty()) {
        Error(FindingCode::kMigrationInterfaceMissing, h->name,
              absl::StrCat(h->name, " (", h == &src_ ? "source" : "destination",
                           ") has no migration interface; configure one (host file "
                           "migration_interface.address, or a libvirt host interface with an IP address)"));
      } else if (h->migration_interface->link_speed_mbps != 0 &&  // 0: unknown (loopback, virtual NIC)
                 h->migration_interface->link_speed_mbps < kMinMigrationLinkMbps) {
        Add(Severity::kWarning, FindingCode::kMigrationLinkSlow, h->name,
            absl::StrCat(h->name, "'s migration interface ", h->migration_interface->address, " runs at ",
                         h->migration_interface->link_speed_mbps, " Mbit/s (< ", kMinMigrationLinkMbps,
                         "); the copy will be slow and a busy guest may not converge. Use a 1 Gbit/s "
                         "or faster link"));
      }
    }
  }

  void CheckKvm() {
    if (vm_.backend != Backend::kKvm) return;
    for (const std::string& cap : RequiredKvmCapabilityNames()) {
      if (std::find(dst_.kvm_capabilities.begin(), dst_.kvm_capabilities.end(), cap) !=
          dst_.kvm_capabilities.end()) {
        continue;
      }
      Error(FindingCode::kKvmCapabilityMissing, cap,
            absl::StrCat(dst_.name, "'s KVM lacks ", cap,
                         ", which a Ferry microVM needs; update the destination's kernel or enable KVM "
                         "there (is /dev/kvm usable?), or choose another destination"));
    }
  }

  void CheckStorageTarget() {
    const std::string& name = storage_->to_datastore;
    auto it = std::find_if(dst_.datastores.begin(), dst_.datastores.end(),
                           [&](const DatastoreFacts& d) { return d.name == name; });
    if (it == dst_.datastores.end()) {
      std::string known;
      for (const DatastoreFacts& d : dst_.datastores) absl::StrAppend(&known, known.empty() ? "" : ", ", d.name);
      Error(FindingCode::kDestinationDatastore, name,
            absl::StrCat(dst_.name, " has no datastore named '", name, "'",
                         known.empty() ? " (it has none)" : absl::StrCat(" (it has: ", known, ")"),
                         "; name one of its datastores with --to-datastore"));
      return;
    }
    if (it->read_only) {
      Error(FindingCode::kDestinationDatastore, name,
            absl::StrCat("datastore '", name, "' is mounted read-only on ", dst_.name,
                         "; the VM's disks cannot be copied there"));
      return;
    }
    if (storage_->free_bytes && *storage_->free_bytes < storage_->needed_bytes) {
      Error(FindingCode::kDestinationDatastore, name,
            absl::StrCat("datastore '", name, "' on ", dst_.name, " has ", *storage_->free_bytes >> 20,
                         " MiB free; the VM's disks and directory need ", (storage_->needed_bytes + (1 << 20) - 1) >> 20,
                         " MiB; free space there or choose another datastore"));
    }
  }

  // The destination datastore for `path`, or null after reporting `not_shared`.
  const DatastoreFacts* SharedDatastore(const std::string& path, FindingCode not_shared, const char* what) {
    const DatastoreFacts* src = DatastoreOf(src_, path);
    if (src == nullptr) {
      Error(not_shared, path,
            absl::StrCat(what, " ", path, " is not on any datastore of ", src_.name,
                         ", so no other host can see it; move it to a datastore shared with ", dst_.name));
      return nullptr;
    }
    if (src->uuid.empty()) {
      Error(FindingCode::kDatastoreUnidentified, path,
            absl::StrCat(what, " ", path, " is on datastore '", src->name, "' (", src->path, "), which has no ",
                         kDatastoreIdFile, ", so whether ", dst_.name, " sees the same storage cannot be told",
                         src->read_only ? "; it is read-only on " : "", src->read_only ? src_.name : "",
                         ". Start a Ferry agent on a host that mounts it read-write (the agent writes the id), "
                         "or write one there: cat /proc/sys/kernel/random/uuid > ", src->path, "/", kDatastoreIdFile));
      return nullptr;
    }
    const DatastoreFacts* dst = DatastoreByUuid(dst_, src->uuid);
    if (dst == nullptr) {
      Error(not_shared, path,
            absl::StrCat(what, " ", path, " is on datastore '", src->name, "' (", src->uuid, "), which ",
                         dst_.name, " does not see; mount the same storage on ", dst_.name,
                         " (a datastore is identified by the id inside it, not its path) or move the file "
                         "to a datastore both hosts share"));
    }
    return dst;
  }

  void CheckAccess(const std::string& path, const char* what) {
    auto it = std::find_if(dst_.disk_access.begin(), dst_.disk_access.end(),
                           [&](const DiskAccessFacts& a) { return a.path == path; });
    if (it != dst_.disk_access.end() && it->accessible) return;
    std::string why = it == dst_.disk_access.end()
                          ? std::string("the destination did not report opening it (ProbeDiskAccess)")
                          : it->error;
    Error(FindingCode::kDiskNotAccessible, path,
          absl::StrCat(dst_.name, " sees the datastore but cannot open ", what, " ", path, ": ", why,
                       "; fix the file's permissions or size on the shared datastore"));
  }

  void CheckDisk(const DiskSpec& d) {
    switch (d.kind) {
      case DiskKind::kCdrom:
      case DiskKind::kFloppy:
        if (!d.path.empty()) {
          Error(FindingCode::kMediaMounted, d.path,
                absl::StrCat("a ", DiskKindName(d.kind), " image is mounted (", d.path,
                             "); disconnect it (set the drive empty) before migrating"));
        }
        return;
      case DiskKind::kFile:
        if (storage_) return;  // copied to the target datastore: CheckStorageTarget
        if (SharedDatastore(d.path, FindingCode::kDatastoreNotShared, "disk")) CheckAccess(d.path, "disk");
        return;
      case DiskKind::kRdm:
        if (std::find(dst_.rdm_devices.begin(), dst_.rdm_devices.end(), d.device) == dst_.rdm_devices.end()) {
          Error(FindingCode::kRdmNotVisible, d.device,
                absl::StrCat("raw device ", d.device, " (mapped by ", d.path, ") is not visible on ", dst_.name,
                             "; present the same LUN to ", dst_.name, " (zoning/masking) and rescan"));
        }
        if (SharedDatastore(d.path, FindingCode::kRdmMappingNotShared, "RDM mapping file")) {
          CheckAccess(d.path, "RDM mapping file");
        }
        return;
    }
  }

  void CheckNic(const NicSpec& nic, size_t index) {
    const VirtualSwitchFacts* sw = SwitchOfPortGroup(dst_, nic.port_group);
    std::string subject = absl::StrCat("nic", index, " ", nic.mac);
    if (sw == nullptr) {
      Error(FindingCode::kPortGroupMissing, subject,
            absl::StrCat("port group '", nic.port_group, "' does not exist on ", dst_.name,
                         "; create it on a switch with an uplink there, or connect the NIC to a port "
                         "group both hosts have"));
    } else if (sw->uplinks.empty()) {
      Error(FindingCode::kPortGroupNoUplink, subject,
            absl::StrCat("port group '", nic.port_group, "' on ", dst_.name, " is on switch '", sw->name,
                         "', which has no uplink: the VM would lose its network. Add an uplink to '",
                         sw->name, "' or move the port group to a switch with one"));
    }
  }

  const VmSpec& vm_;
  const HostFacts& src_;
  const HostFacts& dst_;
  const PrecheckAdvice& advice_;
  const StorageMove* storage_;  // null: the disks stay where they are
  std::vector<Finding> out_;
};

}  // namespace

std::vector<Finding> RunPrechecks(const VmSpec& vm, const HostFacts& source, const HostFacts& destination,
                                  const PrecheckAdvice& advice, const StorageMove* storage) {
  return Checker(vm, source, destination, advice, storage).Run();
}

}  // namespace ferry
