#pragma once
// Waiting on and reaping the ferry-vmm processes the tests/vmm suites start.

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <functional>
#include <thread>

namespace ferry::vmm_test {

// Polls `done` every 20 ms for up to `seconds`; its last answer.
inline bool WaitUntil(const std::function<bool()>& done, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

// The process has exited (reaped here if it was our child).
inline bool ProcessGone(pid_t pid) { return kill(pid, 0) != 0 || waitpid(pid, nullptr, WNOHANG) == pid; }

}  // namespace ferry::vmm_test
