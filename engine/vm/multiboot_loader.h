#pragma once
// Loads a multiboot (v1) image into guest memory the way a multiboot boot loader does, for the
// microVM's vCPUs to enter in 32-bit protected mode with EAX=0x2BADB002 and EBX=info_gpa.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "engine/memory/guest_memory.h"

namespace ferry {

struct MultibootEntry {
  uint32_t entry_eip;
  uint32_t info_gpa;
};

// Loads the image (by the header's address fields when flag bit 16 is set, else by its ELF32 or
// ELF64 program headers) and writes the multiboot info (flags: mem, cmdline, mmap), mem_lower /
// mem_upper, a memory map and the command line at the guest_abi.h addresses. A missing or
// unreadable image is NotFound naming the path; not multiboot, or not fitting in memory, is
// InvalidArgument with the reason.
absl::StatusOr<MultibootEntry> LoadMultibootImage(const std::string& image_path,
                                                  const std::string& cmdline, GuestMemory& mem);

// Where ferry-guest.elf is by default: $FERRY_GUEST_IMAGE, else beside /proc/self/exe, else in
// ../lib/ferry from it (installed), else in the directory $FERRY_BIN_DIR names.
std::string DefaultGuestImagePath();

}  // namespace ferry
