// ferry-faultfs: a FUSE passthrough of BACKING_DIR on MOUNTPOINT whose faults (APD, PDL, ENOSPC,
// read-only, slow) are switched at run time over a control socket. Tests only (docs/faultfs.md).
//
//   ferry-faultfs BACKING_DIR MOUNTPOINT --control SOCKET [--mode MODE] [--debug] [--exit-with-parent] [--shared-locks]
//   ferry-faultfs ctl SOCKET set apd [path=/PREFIX] | get

#include <fcntl.h>
#include <sys/prctl.h>
#include <csignal>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_join.h"
#include "tests/faultfs/control_channel.h"
#include "tests/faultfs/passthrough_ops.h"

namespace ferry::faultfs {
namespace {

constexpr unsigned kMaxFuseThreads = 64;  // operations blocked in an APD each hold one

int RunControlClient(const std::string& socket_path, const std::vector<std::string>& words) {
  absl::StatusOr<std::string> reply = SendControlRequest(socket_path, absl::StrJoin(words, " "));
  if (!reply.ok()) {
    std::fprintf(stderr, "ferry-faultfs ctl: %s\n", std::string(reply.status().message()).c_str());
    return 1;
  }
  std::printf("%s\n", reply->c_str());
  return 0;
}

int Serve(const std::string& backing_dir, const std::string& mountpoint, const std::string& control_path,
          const std::string& initial_mode, bool debug, bool shared_locks) {
  absl::StatusOr<FaultPolicy> initial = ParsePolicy(initial_mode);
  if (!initial.ok()) {
    std::fprintf(stderr, "ferry-faultfs: --mode: %s\n", std::string(initial.status().message()).c_str());
    return 2;
  }
  UniqueFd backing(open(backing_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!backing.valid()) {
    std::perror(("ferry-faultfs: backing directory " + backing_dir).c_str());
    return 2;
  }
  FaultGate gate;
  gate.SetPolicy(*initial);
  absl::StatusOr<std::unique_ptr<ControlServer>> control = ControlServer::Start(control_path, gate);
  if (!control.ok()) {
    std::fprintf(stderr, "ferry-faultfs: %s\n", std::string(control.status().message()).c_str());
    return 2;
  }

  std::vector<std::string> argv_storage = {"ferry-faultfs", "-o",
                                           "fsname=ferry-faultfs,subtype=ferry-faultfs,default_permissions"};
  if (geteuid() == 0) argv_storage[2] += ",allow_other";  // VMMs may run as another user
  if (debug) argv_storage.push_back("-d");
  std::vector<char*> argv;
  for (std::string& arg : argv_storage) argv.push_back(arg.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  PassthroughContext ctx;
  ctx.backing_fd = backing.get();
  ctx.gate = &gate;
  fuse_operations ops = PassthroughOperations(shared_locks);
  fuse* fs = fuse_new(&args, &ops, sizeof ops, &ctx);
  fuse_opt_free_args(&args);
  if (fs == nullptr) {
    std::fprintf(stderr, "ferry-faultfs: fuse_new failed\n");
    return 1;
  }
  ctx.session = fuse_get_session(fs);
  int rc = 1;
  if (fuse_mount(fs, mountpoint.c_str()) != 0) {
    std::fprintf(stderr, "ferry-faultfs: cannot mount on %s (is /dev/fuse there and are we root?)\n",
                 mountpoint.c_str());
  } else {
    if (fuse_set_signal_handlers(ctx.session) == 0) {
      std::fprintf(stderr, "ferry-faultfs: %s on %s, control %s, mode %s\n", backing_dir.c_str(),
                   mountpoint.c_str(), control_path.c_str(), DescribePolicy(*initial).c_str());
      fuse_loop_config* loop = fuse_loop_cfg_create();
      fuse_loop_cfg_set_max_threads(loop, kMaxFuseThreads);
      rc = fuse_loop_mt(fs, loop) == 0 ? 0 : 1;
      fuse_loop_cfg_destroy(loop);
      fuse_remove_signal_handlers(ctx.session);
    }
    fuse_unmount(fs);
  }
  fuse_destroy(fs);
  std::fprintf(stderr, "ferry-faultfs: %s unmounted\n", mountpoint.c_str());
  return rc;
}

}  // namespace
}  // namespace ferry::faultfs

int main(int argc, char** argv) {
  CLI::App app{"ferry-faultfs: a FUSE passthrough that fails on command (tests only)"};
  app.require_subcommand(0, 1);
  std::string backing_dir, mountpoint, control_path, mode = "healthy";
  bool debug = false;
  bool exit_with_parent = false;
  bool shared_locks = false;
  app.add_option("BACKING_DIR", backing_dir, "directory whose files are served");
  app.add_option("MOUNTPOINT", mountpoint, "where to mount them");
  app.add_option("--control", control_path, "Unix socket that switches modes")->required();
  app.add_option("--mode", mode, "initial mode: healthy, apd, pdl, enospc, readonly, \"slow MS\"");
  app.add_flag("--debug", debug, "log every FUSE request (libfuse -d)");
  app.add_flag("--exit-with-parent", exit_with_parent,
               "unmount and exit (as on SIGTERM) when the thread that started us ends, so a crashed test leaves no mount");

  app.add_flag("--shared-locks", shared_locks,
               "byte-range locks as OFD locks on the backing files, seen by other mounts of BACKING_DIR");

  CLI::App* ctl = app.add_subcommand("ctl", "send one request to a running ferry-faultfs");
  std::string ctl_socket;
  std::vector<std::string> ctl_words;
  ctl->add_option("SOCKET", ctl_socket, "its control socket")->required();
  ctl->add_option("REQUEST", ctl_words, "\"set MODE [ARG] [path=/PREFIX]\" or \"get\"")->required();
  // `ctl` has its own arguments; the serving form's --control does not apply to it.
  app.get_option("--control")->required(false);
  CLI11_PARSE(app, argc, argv);

  if (ctl->parsed()) return ferry::faultfs::RunControlClient(ctl_socket, ctl_words);
  if (backing_dir.empty() || mountpoint.empty() || control_path.empty()) {
    std::fprintf(stderr, "ferry-faultfs: need BACKING_DIR MOUNTPOINT --control SOCKET\n");
    return 2;
  }
  if (exit_with_parent) {
    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) return 1;  // the parent is already gone
  }
  std::error_code ec;
  std::string abs_mount = std::filesystem::absolute(mountpoint, ec).string();
  return ferry::faultfs::Serve(backing_dir, ec ? mountpoint : abs_mount, control_path, mode, debug, shared_locks);
}
