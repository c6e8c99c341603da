#include "engine/agent/vmm_launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/remote_vm.h"
#include "engine/base/status.h"
#include "engine/storage/vm_lock.h"
#include "engine/vm/vm_spec_proto.h"
#include "engine/vmm/vmm_client.h"

namespace ferry {
namespace {

constexpr int kSocketWaitMs = 10'000;
constexpr int kCreateTimeoutMs = 120'000;  // building a big KVM guest takes a while

// The last lines of the VMM's log, for an error that says why it did not come up.
std::string LogTail(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.size() > 400) text = text.substr(text.size() - 400);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

// A VMM that did not come up: gone, with its socket and pid file.
void KillAndReap(pid_t pid, const std::string& vm_dir) {
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  unlink((vm_dir + "/" + kVmmSocketName).c_str());
  unlink((vm_dir + "/" + kVmmPidFileName).c_str());
}

}  // namespace

absl::StatusOr<pid_t> SpawnVmm(const std::string& binary, const std::string& vm_dir, const std::string& name,
                               const std::vector<std::string>& extra_args) {
  if (access(binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot run the VMM binary ", binary, ": ", std::strerror(errno),
                                                      " (build ferry-vmm, or start the agent with --in-process-vms)"));
  }
  const std::string log = vm_dir + "/" + kVmmLogName;
  UniqueFd log_fd(open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!log_fd.valid()) return ErrnoError(absl::StrCat("open ", log));
  UniqueFd null_fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  std::vector<std::string> args = {binary, "--socket", vm_dir + "/" + kVmmSocketName, "--pid-file",
                                   vm_dir + "/" + kVmmPidFileName, "--name", name};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return ErrnoError("fork ferry-vmm");
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec. No parent-death signal: it outlives us.
    setsid();
    dup2(null_fd.get(), 0);
    dup2(log_fd.get(), 1);
    dup2(log_fd.get(), 2);
    syscall(SYS_close_range, 3U, ~0U, 0U);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

absl::StatusOr<VmmConnection> WaitForVmmSocket(const std::string& socket, pid_t pid, const std::string& log) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kSocketWaitMs);
  for (;;) {
    auto conn = VmmConnection::Connect(socket, 1000);
    if (conn.ok()) return conn;
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      return absl::InternalError(absl::StrCat("ferry-vmm exited before it listened (status ", status, "): ",
                                              LogTail(log)));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("ferry-vmm did not listen on ", socket, " within ",
                                                      kSocketWaitMs / 1000, " s: ", LogTail(log)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string DatastoreVmmDirectory(const std::string& vm_dir, const std::string& agent) {
  return absl::StrCat(vm_dir, "/vmm-", agent);
}

std::string DefaultVmmBinaryPath() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto beside = self.parent_path() / "ferry-vmm";
    if (access(beside.c_str(), X_OK) == 0) return beside.string();
  }
  if (const char* bin = std::getenv("FERRY_BIN_DIR"); bin && *bin) return std::string(bin) + "/ferry-vmm";
  return ec ? "ferry-vmm" : (self.parent_path() / "ferry-vmm").string();
}

absl::StatusOr<std::unique_ptr<Vm>> LaunchVmm(const VmSpec& spec, bool for_restore, const std::string& vm_dir,
                                              const std::string& vmm_binary, const VmmLockRequest& lock,
                                              const std::string& arriving_migration) {
  const std::string socket = vm_dir + "/" + kVmmSocketName;
  if (!lock.path.empty()) {
    // A VM another VMM holds (this host's or, on a shared datastore, another's) is refused naming
    // the holder, before anything touches the socket in its directory.
    ASSIGN_OR_RETURN(std::optional<VmLockHolder> holder, VmLock::CurrentHolder(lock.path));
    if (holder && !for_restore) return LockedBy(spec.name, *holder, lock.path);
  }
  if (auto existing = VmmConnection::Connect(socket, 500); existing.ok()) {
    return absl::AlreadyExistsError(absl::StrCat("a VMM process already serves VM '", spec.name, "' at ", socket));
  }
  ASSIGN_OR_RETURN(pid_t pid, SpawnVmm(vmm_binary, vm_dir, spec.name));
  auto conn = WaitForVmmSocket(socket, pid, vm_dir + "/" + kVmmLogName);
  if (!conn.ok()) {
    KillAndReap(pid, vm_dir);
    return conn.status();
  }
  v1::VmmRequest create;
  *create.mutable_create()->mutable_spec() = VmSpecToProto(spec);
  create.mutable_create()->set_mode(for_restore ? v1::VMM_START_MODE_RESTORE : v1::VMM_START_MODE_BOOT);
  create.mutable_create()->set_console_log_path(spec.console_log_path);
  create.mutable_create()->set_image_path(spec.image_path);
  if (for_restore) create.mutable_create()->set_arriving_migration(arriving_migration);
  if (!lock.path.empty()) {
    create.mutable_create()->mutable_lock()->set_path(lock.path);
    create.mutable_create()->mutable_lock()->set_agent(lock.agent);
  }
  if (auto created = conn->Call(create, kCreateTimeoutMs); !created.ok()) {
    KillAndReap(pid, vm_dir);
    return created.status();  // the backend's own error (e.g. no /dev/kvm), as in-process
  }
  auto vm = RemoteVm::Attach(std::move(*conn), pid);
  if (!vm.ok()) {
    KillAndReap(pid, vm_dir);
    return vm.status();
  }
  spdlog::info("event=vmm_started vm={} pid={} mode={}", spec.name, pid, for_restore ? "restore" : "boot");
  return std::unique_ptr<Vm>(std::move(*vm));
}

bool RunsInAgentProcess(const AgentConfig& config, const VmSpec& spec) {
  return config.in_process_vms || spec.console_log_path.empty();
}

absl::StatusOr<std::unique_ptr<Vm>> CreateAgentVm(const AgentConfig& config, const VmSpec& spec, bool for_restore,
                                                  const VmmLockRequest& lock, const std::string& arriving_migration) {
  if (RunsInAgentProcess(config, spec)) {
    return for_restore ? CreateVmForRestore(spec) : CreateVmForBoot(spec);
  }
  std::string vm_dir = std::filesystem::path(spec.console_log_path).parent_path().string();
  if (!lock.path.empty()) {  // a datastore VM
    vm_dir = DatastoreVmmDirectory(vm_dir, config.name);
    std::error_code ec;
    std::filesystem::create_directories(vm_dir, ec);
    if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot create ", vm_dir, ": ", ec.message()));
  }
  return LaunchVmm(spec, for_restore, vm_dir,
                   config.vmm_binary.empty() ? DefaultVmmBinaryPath() : config.vmm_binary, lock, arriving_migration);
}

}  // namespace ferry
