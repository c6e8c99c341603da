#include "engine/vm/serial_device.h"

#include <fcntl.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"

namespace ferry {
namespace {

// Register offsets from the base port.
constexpr uint16_t kRbrThr = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kLsrDataReady = 0x01;
constexpr size_t kMaxLine = 4096;  // a guest that never sends '\n' must not grow memory forever

}  // namespace

absl::StatusOr<std::unique_ptr<SerialDevice>> SerialDevice::Create(const std::string& log_path,
                                                                   bool to_stdout, LineSink on_line) {
  UniqueFd log;
  if (!log_path.empty()) {
    log.Reset(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!log.valid()) return ErrnoError(absl::StrCat("open console log ", log_path));
  }
  return std::unique_ptr<SerialDevice>(new SerialDevice(std::move(log), to_stdout, std::move(on_line)));
}

void SerialDevice::PioRead(uint16_t port, uint8_t* data, uint32_t size) {
  std::lock_guard lock(mu_);
  uint8_t v = 0xff;
  switch (port & 7) {
    case kRbrThr:
      if (regs_.lcr & kLcrDlab) {
        v = regs_.dll;
      } else if (!regs_.rx_fifo.empty()) {
        v = static_cast<uint8_t>(regs_.rx_fifo.front());
        regs_.rx_fifo.erase(0, 1);
      } else {
        v = 0;
      }
      break;
    case kIer: v = (regs_.lcr & kLcrDlab) ? regs_.dlm : regs_.ier; break;
    case kIirFcr: v = regs_.iir; break;
    case kLcr: v = regs_.lcr; break;
    case kMcr: v = regs_.mcr; break;
    case kLsr: v = regs_.lsr | (regs_.rx_fifo.empty() ? 0 : kLsrDataReady); break;
    case kMsr: v = regs_.msr; break;
    case kScr: v = regs_.scr; break;
  }
  for (uint32_t i = 0; i < size; ++i) data[i] = i == 0 ? v : 0;
}

void SerialDevice::PioWrite(uint16_t port, const uint8_t* data, uint32_t size) {
  std::lock_guard lock(mu_);
  uint8_t v = data[0];
  switch (port & 7) {
    case kRbrThr:
      if (regs_.lcr & kLcrDlab) regs_.dll = v; else Emit(v);
      break;
    case kIer:
      if (regs_.lcr & kLcrDlab) regs_.dlm = v; else regs_.ier = v & 0x0f;
      break;
    case kIirFcr: break;  // FIFO control: transmit is instantaneous, nothing to configure
    case kLcr: regs_.lcr = v; break;
    case kMcr: regs_.mcr = v & 0x1f; break;
    case kLsr: break;  // read-only
    case kMsr: break;
    case kScr: regs_.scr = v; break;
  }
}

void SerialDevice::Emit(uint8_t byte) {
  char c = static_cast<char>(byte);
  if (log_.valid()) (void)!::write(log_.get(), &c, 1);
  if (to_stdout_) {
    fputc(c, stdout);
    if (c == '\n') fflush(stdout);
  }
  if (c == '\n') {
    std::string line = std::move(regs_.partial_line);
    regs_.partial_line.clear();
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (on_line_) on_line_(line);
  } else if (regs_.partial_line.size() < kMaxLine) {
    regs_.partial_line.push_back(c);
  }
}

v1::SerialState SerialDevice::Save() const {
  std::lock_guard lock(mu_);
  v1::SerialState s;
  s.set_ier(regs_.ier);
  s.set_iir(regs_.iir);
  s.set_lcr(regs_.lcr);
  s.set_mcr(regs_.mcr);
  s.set_lsr(regs_.lsr);
  s.set_msr(regs_.msr);
  s.set_scr(regs_.scr);
  s.set_dll(regs_.dll);
  s.set_dlm(regs_.dlm);
  s.set_rx_fifo(regs_.rx_fifo);
  s.set_partial_line(regs_.partial_line);
  return s;
}

void SerialDevice::Restore(const v1::SerialState& s) {
  std::lock_guard lock(mu_);
  regs_.ier = static_cast<uint8_t>(s.ier());
  regs_.iir = static_cast<uint8_t>(s.iir());
  regs_.lcr = static_cast<uint8_t>(s.lcr());
  regs_.mcr = static_cast<uint8_t>(s.mcr());
  regs_.lsr = static_cast<uint8_t>(s.lsr());
  regs_.msr = static_cast<uint8_t>(s.msr());
  regs_.scr = static_cast<uint8_t>(s.scr());
  regs_.dll = static_cast<uint8_t>(s.dll());
  regs_.dlm = static_cast<uint8_t>(s.dlm());
  regs_.rx_fifo = s.rx_fifo();
  regs_.partial_line = s.partial_line();
}

}  // namespace ferry
