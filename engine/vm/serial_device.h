#pragma once
// A 16550-compatible UART at COM1, output only in practice: the guest polls LSR and writes THR.
// Console bytes go to the VM's log file and optionally stdout; whole lines go to a callback.

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "engine/base/unique_fd.h"
#include "engine/vm/io_bus.h"
#include "proto/ferry/v1/state.pb.h"

namespace ferry {

// The device's whole register state, flat (kvmtool's habit), so save/restore is a copy.
struct SerialRegisters {
  uint8_t ier = 0;
  uint8_t iir = 0x01;  // no interrupt pending
  uint8_t lcr = 0x03;  // 8N1
  uint8_t mcr = 0x08;  // OUT2
  uint8_t lsr = 0x60;  // THR empty, transmitter empty
  uint8_t msr = 0xb0;  // DCD, DSR, CTS
  uint8_t scr = 0;
  uint8_t dll = 0x0c;  // 9600 baud
  uint8_t dlm = 0;
  std::string rx_fifo;
  std::string partial_line;
};

class SerialDevice : public PioDevice {
 public:
  static constexpr uint16_t kPortCount = 8;
  using LineSink = std::function<void(const std::string&)>;

  // `log_path` empty: no log file. The file is appended to (a restored VM continues its log).
  static absl::StatusOr<std::unique_ptr<SerialDevice>> Create(const std::string& log_path, bool to_stdout,
                                                              LineSink on_line);

  void PioRead(uint16_t port, uint8_t* data, uint32_t size) override;
  void PioWrite(uint16_t port, const uint8_t* data, uint32_t size) override;

  v1::SerialState Save() const;
  void Restore(const v1::SerialState& s);

 private:
  SerialDevice(UniqueFd log, bool to_stdout, LineSink on_line)
      : log_(std::move(log)), to_stdout_(to_stdout), on_line_(std::move(on_line)) {}
  void Emit(uint8_t byte) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  UniqueFd log_;
  bool to_stdout_;
  LineSink on_line_;
  mutable std::mutex mu_;
  SerialRegisters regs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ferry
