#pragma once
// Temp dirs and files for host/precheck tests.

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace ferry::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ferry-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& rel) const { return path_ + "/" + rel; }
  // Creates (parents too) and returns the directory path_/rel.
  std::string Dir(const std::string& rel) const {
    std::filesystem::create_directories(Sub(rel));
    return Sub(rel);
  }
  std::string Write(const std::string& rel, const std::string& text) const {
    std::filesystem::create_directories(std::filesystem::path(Sub(rel)).parent_path());
    std::ofstream(Sub(rel)) << text;
    return Sub(rel);
  }

 private:
  std::string path_;
};

}  // namespace ferry::testing

namespace ferry::testing {

// A libvirt test-driver node description (test:///path): one dir pool per datastore, networks
// with port groups (forward_mode "" = isolated), storage node devices, one host interface.
struct LibvirtNode {
  uint64_t memory_kib = 8 << 20;
  struct Pool { std::string name, path; };
  struct Net { std::string name, forward_mode, bridge; std::vector<std::string> port_groups; };
  std::vector<Pool> pools;
  std::vector<Net> nets;
  std::vector<std::string> block_devices;
  std::string iface_ip;  // "" = no interface
  uint32_t iface_speed = 0;
};

inline std::string LibvirtNodeXml(const LibvirtNode& n) {
  std::string x = "<node>\n  <cpu><mhz>3000</mhz><model>x86_64</model><active>4</active><nodes>1</nodes>"
                  "<sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>\n";
  x += "  <memory>" + std::to_string(n.memory_kib) + "</memory>\n";
  int id = 0;
  auto uuid = [&id] {
    char buf[16];
    snprintf(buf, sizeof buf, "%04x", ++id & 0xffff);
    return "35bb2ad9-388a-cdfe-461a-b8907f6e" + std::string(buf);
  };
  for (const auto& p : n.pools) {
    x += "  <pool type='dir'><name>" + p.name + "</name><uuid>" + uuid() +
         "</uuid><capacity>0</capacity><allocation>0</allocation><available>0</available><target><path>" + p.path +
         "</path></target></pool>\n";
  }
  for (const auto& net : n.nets) {
    x += "  <network><name>" + net.name + "</name><uuid>" + uuid() + "</uuid>";
    if (!net.forward_mode.empty()) x += "<forward mode='" + net.forward_mode + "'/>";
    x += "<bridge name='" + net.bridge + "'/>";
    for (const auto& pg : net.port_groups) x += "<portgroup name='" + pg + "'/>";
    x += "</network>\n";
  }
  int dev = 0;
  for (const auto& b : n.block_devices) {
    ++dev;
    x += "  <device><name>block_" + std::to_string(dev) + "</name><path>/sys/devices/x" + std::to_string(dev) +
         "</path><parent>computer</parent><capability type='storage'><block>" + b +
         "</block><drive_type>disk</drive_type><size>1073741824</size></capability></device>\n";
  }
  if (!n.iface_ip.empty()) {
    x += "  <interface type='ethernet' name='eth1'><start mode='onboot'/><mac address='aa:bb:cc:dd:ee:ff'/>"
         "<link speed='" + std::to_string(n.iface_speed) + "' state='up'/><protocol family='ipv4'><ip address='" +
         n.iface_ip + "' prefix='24'/></protocol></interface>\n";
  }
  x += "</node>\n";
  return x;
}

}  // namespace ferry::testing
