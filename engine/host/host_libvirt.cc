#include <libxml/uri.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/host/datastore_id.h"
#include "engine/host/host_file.h"
#include "engine/host/libvirt_util.h"
#include "engine/host/local_host.h"

namespace ferry {
namespace {

// The URI as libxml2 (libvirt's own URI parser) reads it.
struct LibvirtUri {
  std::string scheme, server, path;
};

// A test-driver description is a file named by absolute path (test:///abs/node.xml): test://dir/x
// would make libvirt dial a remote host "dir" over TLS and fail asking for a CA certificate.
absl::StatusOr<LibvirtUri> CheckLibvirtUri(const std::string& uri) {
  xmlURIPtr parsed = xmlParseURI(uri.c_str());
  if (parsed == nullptr || parsed->scheme == nullptr) {
    xmlFreeURI(parsed);
    return absl::InvalidArgumentError(
        absl::StrCat("libvirt:", uri, ": not a libvirt URI (e.g. libvirt:qemu:///system, libvirt:test:///abs/node.xml)"));
  }
  LibvirtUri u{parsed->scheme, parsed->server ? parsed->server : "", parsed->path ? parsed->path : ""};
  xmlFreeURI(parsed);
  if (u.scheme != "test" || u.path == "/default") return u;
  if (!u.server.empty()) {
    std::string relative = absl::StrCat(u.server, u.path);
    std::error_code ec;
    std::string hint;
    if (std::filesystem::exists(relative, ec)) {
      hint = absl::StrCat(" (here: libvirt:test://", std::filesystem::absolute(relative, ec).string(), ")");
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "libvirt:", uri, ": '", u.server,
        "' would be a remote host; a node description file is named by its absolute path, "
        "libvirt:test:///ABS/PATH.xml", hint));
  }
  if (access(u.path.c_str(), R_OK) != 0) return ErrnoError(absl::StrCat("libvirt:", uri, ": ", u.path));
  return u;
}

// "" when only libvirt can tell (a local hypervisor: this machine).
std::string HostNameOf(const LibvirtUri& u) {
  if (!u.server.empty()) return u.server;
  if (u.scheme == "test" && u.path != "/default") return std::filesystem::path(u.path).stem().string();
  return "";
}

absl::Status LoadPools(virConnectPtr conn, const std::string& uri, DatastoreIdPolicy datastore_ids, HostFacts& h) {
  virStoragePoolPtr* pools = nullptr;
  int n = virConnectListAllStoragePools(conn, &pools, VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE);
  if (n < 0) return LibvirtError(absl::StrCat(uri, ": list storage pools"));
  absl::Status status;
  for (int i = 0; i < n; ++i) {
    if (status.ok()) {
      auto xml = TakeLibvirtString(virStoragePoolGetXMLDesc(pools[i], 0), "storage pool XML");
      auto doc = xml.ok() ? XmlDoc::Parse(*xml, "storage pool XML") : absl::StatusOr<XmlDoc>(xml.status());
      if (!doc.ok()) {
        status = doc.status();
      } else if (std::string path = doc->First("/pool/target/path"); !path.empty()) {
        // Only pools with a directory are datastores (a disk pool's target is a /dev dir, fine too).
        DatastoreFacts ds{doc->First("/pool/name"), path, ""};
        auto id = IdentifyDatastore(path, datastore_ids);
        if (!id.ok()) {
          status = absl::Status(id.status().code(),
                                absl::StrCat(uri, ": pool '", ds.name, "': ", id.status().message()));
        } else {
          ds.uuid = id->uuid;
          ds.read_only = id->read_only;
          h.datastores.push_back(std::move(ds));
        }
      }
    }
    virStoragePoolFree(pools[i]);
  }
  free(pools);
  return status;
}

absl::Status LoadNetworks(virConnectPtr conn, const std::string& uri, HostFacts& h) {
  virNetworkPtr* nets = nullptr;
  int n = virConnectListAllNetworks(conn, &nets, VIR_CONNECT_LIST_NETWORKS_ACTIVE);
  if (n < 0) return LibvirtError(absl::StrCat(uri, ": list networks"));
  absl::Status status;
  for (int i = 0; i < n; ++i) {
    if (status.ok()) {
      auto xml = TakeLibvirtString(virNetworkGetXMLDesc(nets[i], 0), "network XML");
      auto doc = xml.ok() ? XmlDoc::Parse(*xml, "network XML") : absl::StatusOr<XmlDoc>(xml.status());
      if (!doc.ok()) {
        status = doc.status();
      } else {
        VirtualSwitchFacts sw;
        sw.name = doc->First("/network/name");
        // An isolated network (no <forward>) has no way off the host: no uplink.
        std::string mode = doc->First("/network/forward/@mode");
        if (doc->Has("/network/forward")) {
          for (const char* xp : {"/network/forward/@dev", "/network/forward/interface/@dev",
                                 "/network/forward/pf/@dev"}) {
            for (std::string& dev : doc->All(xp)) {
              if (std::find(sw.uplinks.begin(), sw.uplinks.end(), dev) == sw.uplinks.end()) sw.uplinks.push_back(dev);
            }
          }
          if (sw.uplinks.empty()) {
            std::string bridge = doc->First("/network/bridge/@name");
            sw.uplinks.push_back(mode == "bridge" && !bridge.empty() ? bridge
                                                                     : absl::StrCat(mode.empty() ? "nat" : mode, " (host routing)"));
          }
        }
        sw.port_groups = doc->All("/network/portgroup/@name");
        h.vswitches.push_back(std::move(sw));
      }
    }
    virNetworkFree(nets[i]);
  }
  free(nets);
  return status;
}

absl::Status LoadRdmDevices(virConnectPtr conn, HostFacts& h) {
  virNodeDevicePtr* devs = nullptr;
  int n = virConnectListAllNodeDevices(conn, &devs, VIR_CONNECT_LIST_NODE_DEVICES_CAP_STORAGE);
  if (n < 0) return absl::OkStatus();  // no node-device driver: no RDM devices to offer
  for (int i = 0; i < n; ++i) {
    auto xml = TakeLibvirtString(virNodeDeviceGetXMLDesc(devs[i], 0), "node device XML");
    if (xml.ok()) {
      if (auto doc = XmlDoc::Parse(*xml, "node device XML"); doc.ok()) {
        for (std::string& block : doc->All("/device/capability[@type='storage']/block")) {
          h.rdm_devices.push_back(block);
        }
      }
    }
    virNodeDeviceFree(devs[i]);
  }
  free(devs);
  return absl::OkStatus();
}

void LoadMigrationInterface(virConnectPtr conn, HostFacts& h) {
  virInterfacePtr* ifaces = nullptr;
  int n = virConnectListAllInterfaces(conn, &ifaces, VIR_CONNECT_LIST_INTERFACES_ACTIVE);
  if (n < 0) return;  // no interface driver: no migration interface known
  for (int i = 0; i < n; ++i) {
    auto xml = TakeLibvirtString(virInterfaceGetXMLDesc(ifaces[i], 0), "interface XML");
    if (xml.ok()) {
      if (auto doc = XmlDoc::Parse(*xml, "interface XML"); doc.ok()) {
        std::string address = doc->First("/interface/protocol/ip/@address");
        uint32_t speed = 0;
        (void)absl::SimpleAtoi(doc->First("/interface/link/@speed"), &speed);
        bool loopback = address.rfind("127.", 0) == 0 || address == "::1";
        // The fastest addressed interface is the one a migration would use.
        if (!address.empty() && !loopback &&
            (!h.migration_interface || speed > h.migration_interface->link_speed_mbps)) {
          h.migration_interface = MigrationInterfaceFacts{address, speed};
        }
      }
    }
    virInterfaceFree(ifaces[i]);
  }
  free(ifaces);
}

absl::Status LoadMemory(virConnectPtr conn, const std::string& uri, HostFacts& h) {
  virNodeInfo info;
  if (virNodeGetInfo(conn, &info) != 0) return LibvirtError(absl::StrCat(uri, ": node info"));
  h.memory_total_bytes = uint64_t{info.memory} << 10;
  unsigned long long free_bytes = virNodeGetFreeMemory(conn);
  if (free_bytes == 0) {
    // Drivers without a free-memory figure (the test driver): total minus what running domains hold.
    uint64_t used = 0;
    virDomainPtr* doms = nullptr;
    int n = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    for (int i = 0; i < n; ++i) {
      virDomainInfo di;
      if (virDomainGetInfo(doms[i], &di) == 0) used += uint64_t{di.memory} << 10;
      virDomainFree(doms[i]);
    }
    free(doms);
    free_bytes = used < h.memory_total_bytes ? h.memory_total_bytes - used : 0;
  }
  h.memory_free_bytes = free_bytes;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<HostFacts> LoadHostFactsLibvirt(const std::string& uri, DatastoreIdPolicy datastore_ids) {
  ASSIGN_OR_RETURN(LibvirtUri parts, CheckLibvirtUri(uri));
  ASSIGN_OR_RETURN(LibvirtConn conn, OpenLibvirt(uri));
  HostFacts h;
  h.name = HostNameOf(parts);
  if (h.name.empty()) {
    ASSIGN_OR_RETURN(h.name, TakeLibvirtString(virConnectGetHostname(conn.get()), absl::StrCat(uri, ": hostname")));
  }
  RETURN_IF_ERROR(LoadMemory(conn.get(), uri, h));
  RETURN_IF_ERROR(LoadPools(conn.get(), uri, datastore_ids, h));
  RETURN_IF_ERROR(LoadNetworks(conn.get(), uri, h));
  RETURN_IF_ERROR(LoadRdmDevices(conn.get(), h));
  LoadMigrationInterface(conn.get(), h);
  // libvirt's host CPU model is not a KVM-supported feature set; the agent runs here.
  LocalCpu cpu = ProbeLocalCpu();
  h.cpu_vendor = cpu.vendor;
  h.cpu_features = cpu.features;
  h.kvm_capabilities = ProbeLocalKvmCapabilities();
  return h;
}

}  // namespace ferry
