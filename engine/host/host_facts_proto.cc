#include "engine/host/host_facts_proto.h"

namespace ferry {

v1::HostFacts HostFactsToProto(const HostFacts& f) {
  v1::HostFacts p;
  p.set_name(f.name);
  p.set_cpu_vendor(f.cpu_vendor);
  for (const std::string& s : f.cpu_features) p.add_cpu_features(s);
  p.set_memory_total_bytes(f.memory_total_bytes);
  p.set_memory_free_bytes(f.memory_free_bytes);
  for (const DatastoreFacts& ds : f.datastores) {
    v1::Datastore* d = p.add_datastores();
    d->set_name(ds.name);
    d->set_path(ds.path);
    d->set_uuid(ds.uuid);
    d->set_read_only(ds.read_only);
  }
  for (const VirtualSwitchFacts& sw : f.vswitches) {
    v1::VirtualSwitch* s = p.add_vswitches();
    s->set_name(sw.name);
    for (const std::string& u : sw.uplinks) s->add_uplinks(u);
    for (const std::string& pg : sw.port_groups) s->add_port_groups()->set_name(pg);
  }
  for (const std::string& s : f.rdm_devices) p.add_rdm_devices(s);
  if (f.migration_interface) {
    p.mutable_migration_interface()->set_address(f.migration_interface->address);
    p.mutable_migration_interface()->set_link_speed_mbps(f.migration_interface->link_speed_mbps);
  }
  for (const std::string& s : f.kvm_capabilities) p.add_kvm_capabilities(s);
  for (const DiskAccessFacts& a : f.disk_access) {
    v1::DiskAccess* d = p.add_disk_access();
    d->set_path(a.path);
    d->set_accessible(a.accessible);
    d->set_error(a.error);
  }
  return p;
}

HostFacts HostFactsFromProto(const v1::HostFacts& p) {
  HostFacts f;
  f.name = p.name();
  f.cpu_vendor = p.cpu_vendor();
  f.cpu_features.assign(p.cpu_features().begin(), p.cpu_features().end());
  f.memory_total_bytes = p.memory_total_bytes();
  f.memory_free_bytes = p.memory_free_bytes();
  for (const v1::Datastore& d : p.datastores()) f.datastores.push_back({d.name(), d.path(), d.uuid(), d.read_only()});
  for (const v1::VirtualSwitch& s : p.vswitches()) {
    VirtualSwitchFacts sw;
    sw.name = s.name();
    sw.uplinks.assign(s.uplinks().begin(), s.uplinks().end());
    for (const v1::PortGroup& pg : s.port_groups()) sw.port_groups.push_back(pg.name());
    f.vswitches.push_back(std::move(sw));
  }
  f.rdm_devices.assign(p.rdm_devices().begin(), p.rdm_devices().end());
  if (p.has_migration_interface()) {
    f.migration_interface =
        MigrationInterfaceFacts{p.migration_interface().address(), p.migration_interface().link_speed_mbps()};
  }
  f.kvm_capabilities.assign(p.kvm_capabilities().begin(), p.kvm_capabilities().end());
  for (const v1::DiskAccess& d : p.disk_access()) f.disk_access.push_back({d.path(), d.accessible(), d.error()});
  return f;
}

}  // namespace ferry
