#pragma once
// The virtio-mmio version 2 register file (virtio 1.1 section 4.2.2) of a device with one queue:
// plain state, no threads, no guest memory. A register write returns what the device must do
// about it; the device (VirtioBlkDevice) owns the locking and acts on the event.

#include <cstdint>
#include <vector>

namespace ferry {

inline constexpr uint32_t kVirtioMmioMagic = 0x74726976;  // "virt"
inline constexpr uint32_t kVirtioMmioVersion = 2;
inline constexpr uint32_t kVirtioVendorFerry = 0x59524546;  // "FERY"
inline constexpr uint64_t kVirtioFVersion1 = 1ull << 32;

// Device status bits (virtio 1.1 section 2.1).
inline constexpr uint32_t kVirtioStatusAcknowledge = 1;
inline constexpr uint32_t kVirtioStatusDriver = 2;
inline constexpr uint32_t kVirtioStatusDriverOk = 4;
inline constexpr uint32_t kVirtioStatusFeaturesOk = 8;
inline constexpr uint32_t kVirtioStatusNeedsReset = 64;
inline constexpr uint32_t kVirtioStatusFailed = 128;

inline constexpr uint32_t kVirtioInterruptUsedBuffer = 1;

// Everything a driver can set: saved and restored as it is.
struct VirtioMmioRegisters {
  uint32_t status = 0;
  uint32_t device_features_sel = 0;
  uint32_t driver_features_sel = 0;
  uint64_t driver_features = 0;
  uint32_t queue_sel = 0;
  uint32_t queue_num = 0;
  uint32_t queue_ready = 0;
  uint64_t queue_desc = 0;
  uint64_t queue_driver = 0;
  uint64_t queue_device = 0;
  uint32_t interrupt_status = 0;
};

enum class MmioEvent {
  kNone = 1,
  kReset = 2,         // the driver wrote status 0: drain, then Reset()
  kDriverOk = 3,      // DRIVER_OK newly set: start the queue if it is ready
  kQueueReady = 4,    // QueueReady changed
  kNotify = 5,        // QueueNotify for queue 0
  kInterruptAck = 6,  // interrupt bits cleared
};

class VirtioMmioTransport {
 public:
  VirtioMmioTransport(uint32_t device_id, uint64_t device_features, uint16_t queue_num_max,
                      std::vector<uint8_t> config);

  // `size` is 1, 2, 4 or 8; registers below the config space answer only aligned 4-byte reads.
  void Read(uint64_t offset, uint8_t* data, uint32_t size) const;
  MmioEvent Write(uint64_t offset, const uint8_t* data, uint32_t size);

  void Reset() { regs_ = VirtioMmioRegisters{}; }
  const VirtioMmioRegisters& registers() const { return regs_; }
  VirtioMmioRegisters& mutable_registers() { return regs_; }
  uint64_t device_features() const { return device_features_; }
  uint16_t queue_num_max() const { return queue_num_max_; }
  // DRIVER_OK, queue 0 ready, and no NEEDS_RESET.
  bool queue_live() const;

 private:
  uint32_t ReadRegister(uint64_t offset) const;
  MmioEvent WriteRegister(uint64_t offset, uint32_t value);
  MmioEvent WriteStatus(uint32_t value);
  // Queue registers may change only while the queue is not ready and before DRIVER_OK.
  bool queue_writable() const;

  uint32_t device_id_;
  uint64_t device_features_;
  uint16_t queue_num_max_;
  std::vector<uint8_t> config_;
  VirtioMmioRegisters regs_;
};

}  // namespace ferry
