#pragma once
// Hand-assembled 32-bit test guests (kvmtool's habit): a few bytes of machine code the microVM
// runs from its entry point in flat protected mode with paging off.

#include <cstdint>
#include <vector>

#include "engine/guest/guest_abi.h"

namespace ferry::tiny_guest {

inline constexpr uint64_t kLoadGpa = 0x100000;

inline void Put32(std::vector<uint8_t>& c, uint32_t v) {
  for (int i = 0; i < 4; ++i) c.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// out FERRY_STATUS_SHUTDOWN, 0; then hlt forever.
inline void AppendShutdown(std::vector<uint8_t>& c) {
  c.insert(c.end(), {0x66, 0xBA, FERRY_STATUS_SHUTDOWN & 0xff, FERRY_STATUS_SHUTDOWN >> 8});  // mov dx, port
  c.insert(c.end(), {0x31, 0xC0});                                                            // xor eax, eax
  c.push_back(0xEF);                                                                          // out dx, eax
  c.insert(c.end(), {0xF4, 0xEB, 0xFD});                                                      // hlt; jmp hlt
}

// Writes one dword to each address, then shuts down.
inline std::vector<uint8_t> WriteDwordsThenShutdown(const std::vector<uint32_t>& addresses) {
  std::vector<uint8_t> c;
  for (uint32_t a : addresses) {
    c.push_back(0xB8);  // mov eax, imm32
    Put32(c, a ^ 0x5a5a5a5a);
    c.push_back(0xA3);  // mov [moffs32], eax
    Put32(c, a);
  }
  AppendShutdown(c);
  return c;
}

// Writes `first` as WriteDwordsThenShutdown does, spins until the dword at `flag_gpa` is non-zero,
// writes `second`, then shuts down.
inline std::vector<uint8_t> WriteWaitWriteThenShutdown(const std::vector<uint32_t>& first, uint32_t flag_gpa,
                                                       const std::vector<uint32_t>& second) {
  std::vector<uint8_t> c = WriteDwordsThenShutdown(first);
  c.resize(c.size() - 10);  // drop the shutdown
  c.insert(c.end(), {0x83, 0x3D});  // cmp dword [disp32], 0
  Put32(c, flag_gpa);
  c.push_back(0x00);
  c.insert(c.end(), {0x74, 0xF7});  // je back to the cmp
  std::vector<uint8_t> rest = WriteDwordsThenShutdown(second);
  c.insert(c.end(), rest.begin(), rest.end());
  return c;
}

// Increments the dword at `counter_gpa` forever.
inline std::vector<uint8_t> CountForever(uint32_t counter_gpa) {
  std::vector<uint8_t> c = {0xFF, 0x05};  // inc dword [disp32]
  Put32(c, counter_gpa);
  c.insert(c.end(), {0xEB, 0xF8});  // jmp back 8 bytes
  return c;
}

}  // namespace ferry::tiny_guest
