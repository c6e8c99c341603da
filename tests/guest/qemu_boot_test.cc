// The built-in guest boots under a standard VMM (QEMU's multiboot loader), not only under Ferry's.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

extern char** environ;

namespace ferry {
namespace {

std::string FindInPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    std::string p = dir + "/" + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Kills and reaps QEMU however the test ends.
struct ChildGuard {
  pid_t pid = -1;
  ~ChildGuard() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

TEST(QemuBootTest, GuestBootsUnderQemuAndPrintsHeartbeats) {
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) GTEST_SKIP() << "/dev/kvm is not usable here: " << std::strerror(errno);
  close(kvm);
  std::string qemu = FindInPath("qemu-system-x86_64");
  if (qemu.empty()) GTEST_SKIP() << "qemu-system-x86_64 is not installed";
  const char* bin = std::getenv("FERRY_BIN_DIR");
  std::string image = std::string(bin ? bin : ".") + "/ferry-guest.elf";
  char tmpl[] = "/tmp/ferry-qemu-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl, serial = dir + "/serial.log";

  std::vector<std::string> args = {qemu, "-accel", "kvm", "-cpu", "host,-arch-capabilities", "-kernel", image,
                                   "-append", "ws=8 rate=10 tick_ms=100", "-serial", "file:" + serial,
                                   "-display", "none", "-no-reboot", "-m", "64"};
  // SeaBIOS needs ~20 s to reach the kernel under nested virtualization; qboot (same multiboot
  // loader ROM, no PCI/VGA option-ROM scan) needs ~1 s.
  auto deadline_s = 45;
  if (access("/usr/share/qemu/qboot.rom", R_OK) == 0) {
    args.insert(args.end(), {"-bios", "/usr/share/qemu/qboot.rom"});
    deadline_s = 15;
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ChildGuard child;
  ASSERT_EQ(posix_spawn(&child.pid, qemu.c_str(), nullptr, nullptr, argv.data(), environ), 0);

  std::string log;
  auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(deadline_s)) {
    log = ReadFile(serial);
    if (log.find("\nhb 2 w=") != std::string::npos) break;
    int status;
    if (waitpid(child.pid, &status, WNOHANG) == child.pid) {
      child.pid = -1;
      FAIL() << "QEMU exited early (status " << status << "); serial:\n" << log;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::filesystem::remove_all(dir);
  EXPECT_NE(log.find("ferry-guest: ws=8MiB"), std::string::npos) << log;
  EXPECT_NE(log.find("\nhb 1 w="), std::string::npos) << log;
  EXPECT_NE(log.find("\nhb 2 w="), std::string::npos) << log;
  EXPECT_NE(log.find('.'), std::string::npos) << "no tick_ms dots: " << log;
  EXPECT_EQ(log.find("CORRUPTION"), std::string::npos) << log;
}

}  // namespace
}  // namespace ferry
