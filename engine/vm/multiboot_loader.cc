#include "engine/vm/multiboot_loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/status.h"
#include "engine/base/unique_fd.h"
#include "engine/guest/guest_abi.h"
#include "engine/vm/ram_layout.h"

namespace ferry {
namespace {

constexpr uint32_t kSearchBytes = 8192;  // the header must lie in the image's first 8 KiB
constexpr uint32_t kFlagAddressFields = 1u << 16;
constexpr uint32_t kSupportedRequiredFlags = 0x3;  // page-aligned modules, memory info
constexpr uint32_t kInfoMem = 1u << 0, kInfoCmdline = 1u << 2, kInfoMmap = 1u << 6;
constexpr uint64_t kLowMemTop = 0x9fc00;
constexpr uint64_t kFirstLoadable = FERRY_GPA_CMDLINE + FERRY_CMDLINE_MAX;  // above the boot info

uint32_t Get32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
uint16_t Get16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
void Put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void Put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }

absl::StatusOr<std::vector<uint8_t>> ReadImage(const std::string& path, uint64_t mem_size) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return absl::NotFoundError(absl::StrCat("guest image ", path, ": ", std::strerror(errno)));
  }
  struct stat st {};
  if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat("guest image ", path, " is not a readable regular file"));
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > mem_size) {
    return absl::InvalidArgumentError(absl::StrCat("guest image ", path, " (", size,
                                                   " bytes) is larger than guest memory (",
                                                   mem_size, " bytes)"));
  }
  std::vector<uint8_t> data(size);
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = read(fd.get(), data.data() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::NotFoundError(absl::StrCat("guest image ", path, ": short read"));
    done += static_cast<uint64_t>(n);
  }
  return data;
}

// A segment [gpa, gpa + mem_size) with its first file_size bytes from the file.
absl::Status PlaceSegment(const std::string& path, const std::vector<uint8_t>& file, uint64_t offset,
                          uint64_t file_size, uint64_t gpa, uint64_t mem_size, GuestMemory& mem) {
  if (file_size > mem_size || offset > file.size() || file_size > file.size() - offset) {
    return absl::InvalidArgumentError(
        absl::StrFormat("guest image %s: segment at 0x%x lies outside the file", path, gpa));
  }
  if (gpa < kFirstLoadable) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest image %s: load address 0x%x overlaps the boot information below 0x%x", path, gpa,
        kFirstLoadable));
  }
  if (gpa > mem.size() || mem_size > mem.size() - gpa) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest image %s needs guest memory up to 0x%x but the guest has only %d MiB (0x%x bytes)",
        path, gpa + mem_size, mem.size() >> 20, mem.size()));
  }
  if (gpa + mem_size > FERRY_GPA_LOW_RAM_END) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest image %s: segment [0x%x, 0x%x) reaches above 0x%x, where the 32-bit MMIO hole begins",
        path, gpa, gpa + mem_size, FERRY_GPA_LOW_RAM_END));
  }
  std::memcpy(mem.data() + gpa, file.data() + offset, file_size);
  std::memset(mem.data() + gpa + file_size, 0, mem_size - file_size);
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> LoadByAddressFields(const std::string& path, const std::vector<uint8_t>& file,
                                             uint64_t header_off, GuestMemory& mem) {
  if (header_off + 32 > file.size()) {
    return absl::InvalidArgumentError(absl::StrCat("guest image ", path, ": truncated multiboot header"));
  }
  const uint8_t* h = file.data() + header_off;
  uint32_t header_addr = Get32(h + 12), load_addr = Get32(h + 16), load_end = Get32(h + 20),
           bss_end = Get32(h + 24), entry = Get32(h + 28);
  if (load_addr > header_addr || header_addr - load_addr > header_off) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest image %s: multiboot header_addr 0x%x and load_addr 0x%x are inconsistent", path,
        header_addr, load_addr));
  }
  uint64_t file_off = header_off - (header_addr - load_addr);
  uint64_t load_size = load_end ? uint64_t{load_end} - load_addr : file.size() - file_off;
  if (load_end && load_end < load_addr) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest image %s: multiboot load_end_addr 0x%x is below load_addr 0x%x", path, load_end, load_addr));
  }
  uint64_t end = bss_end ? bss_end : load_addr + load_size;
  if (end < load_addr + load_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest image %s: multiboot bss_end_addr 0x%x is below the loaded data's end", path, bss_end));
  }
  RETURN_IF_ERROR(PlaceSegment(path, file, file_off, load_size, load_addr, end - load_addr, mem));
  if (entry < load_addr || entry >= end) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest image %s: multiboot entry_addr 0x%x is outside the image [0x%x, 0x%x)", path, entry,
        load_addr, end));
  }
  return entry;
}

absl::StatusOr<uint32_t> LoadElf(const std::string& path, const std::vector<uint8_t>& file,
                                 GuestMemory& mem) {
  const uint8_t* e = file.data();
  if (file.size() < 52 || std::memcmp(e, "\x7f" "ELF", 4) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "guest image ", path, ": multiboot header has no address fields (flag bit 16) and the file is not ELF"));
  }
  bool is64 = e[4] == 2;
  if ((e[4] != 1 && e[4] != 2) || e[5] != 1) {
    return absl::InvalidArgumentError(absl::StrCat("guest image ", path, ": not a little-endian ELF32/ELF64 file"));
  }
  uint64_t entry = is64 ? Get64(e + 24) : Get32(e + 24);
  uint64_t phoff = is64 ? Get64(e + 32) : Get32(e + 28);
  uint16_t phentsize = Get16(e + (is64 ? 54 : 42)), phnum = Get16(e + (is64 ? 56 : 44));
  if (phnum == 0 || phentsize < (is64 ? 56 : 32) || phoff > file.size() ||
      uint64_t{phnum} * phentsize > file.size() - phoff) {
    return absl::InvalidArgumentError(absl::StrCat("guest image ", path, ": bad ELF program headers"));
  }
  int loaded = 0;
  for (uint16_t i = 0; i < phnum; ++i) {
    const uint8_t* ph = e + phoff + uint64_t{i} * phentsize;
    if (Get32(ph) != 1) continue;  // PT_LOAD
    uint64_t off = is64 ? Get64(ph + 8) : Get32(ph + 4);
    uint64_t paddr = is64 ? Get64(ph + 24) : Get32(ph + 12);
    uint64_t filesz = is64 ? Get64(ph + 32) : Get32(ph + 16);
    uint64_t memsz = is64 ? Get64(ph + 40) : Get32(ph + 20);
    RETURN_IF_ERROR(PlaceSegment(path, file, off, filesz, paddr, memsz, mem));
    ++loaded;
  }
  if (loaded == 0) return absl::InvalidArgumentError(absl::StrCat("guest image ", path, ": no loadable ELF segment"));
  if (entry >= (1ull << 32)) {
    return absl::InvalidArgumentError(absl::StrFormat("guest image %s: entry 0x%x is above 4 GiB", path, entry));
  }
  return static_cast<uint32_t>(entry);
}

}  // namespace

absl::StatusOr<MultibootEntry> LoadMultibootImage(const std::string& image_path,
                                                  const std::string& cmdline, GuestMemory& mem) {
  if (mem.size() < FERRY_GUEST_MIN_MEMORY) {
    return absl::InvalidArgumentError(absl::StrCat("guest memory of ", mem.size(), " bytes is below the ",
                                                   FERRY_GUEST_MIN_MEMORY >> 20, " MiB minimum"));
  }
  if (cmdline.size() >= FERRY_CMDLINE_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("guest command line is ", cmdline.size(),
                                                   " bytes; the limit is ", FERRY_CMDLINE_MAX - 1));
  }
  ASSIGN_OR_RETURN(std::vector<uint8_t> file, ReadImage(image_path, mem.size()));

  int64_t header_off = -1;
  uint32_t flags = 0;
  uint64_t search = std::min<uint64_t>(file.size(), kSearchBytes);
  for (uint64_t off = 0; off + 12 <= search; off += 4) {
    uint32_t magic = Get32(&file[off]);
    flags = Get32(&file[off + 4]);
    if (magic == FERRY_MULTIBOOT_HEADER_MAGIC && magic + flags + Get32(&file[off + 8]) == 0) {
      header_off = static_cast<int64_t>(off);
      break;
    }
  }
  if (header_off < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "guest image ", image_path, " is not a multiboot image (no header with magic 0x1BADB002 and a valid checksum in its first 8 KiB)"));
  }
  uint32_t required = flags & 0xffff;
  if (required & ~kSupportedRequiredFlags) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest image %s requires multiboot features this loader lacks (flags 0x%x)", image_path, required));
  }
  uint32_t entry = 0;
  if (flags & kFlagAddressFields) {
    ASSIGN_OR_RETURN(entry, LoadByAddressFields(image_path, file, static_cast<uint64_t>(header_off), mem));
  } else {
    ASSIGN_OR_RETURN(entry, LoadElf(image_path, file, mem));
  }

  // Boot information: info struct, memory map and command line, below the image.
  uint8_t* base = mem.data();
  std::memset(base + FERRY_GPA_MULTIBOOT_INFO, 0, kFirstLoadable - FERRY_GPA_MULTIBOOT_INFO);
  std::memcpy(base + FERRY_GPA_CMDLINE, cmdline.data(), cmdline.size());
  struct Range {
    uint64_t base, length;
    uint32_t type;
  };
  // RAM as the microVM maps it (ram_layout.h): below 640 KiB, from 1 MiB to the end of the low
  // range, and any RAM above 4 GiB.
  const std::vector<RamRange> ram = GuestRamRanges(mem.size());
  std::vector<Range> ranges = {{0, kLowMemTop, 1},
                               {kLowMemTop, FERRY_GPA_IMAGE - kLowMemTop, 2},
                               {FERRY_GPA_IMAGE, ram[0].bytes - FERRY_GPA_IMAGE, 1}};
  for (size_t i = 1; i < ram.size(); ++i) ranges.push_back({ram[i].gpa, ram[i].bytes, 1});
  uint8_t* mmap = base + FERRY_GPA_MMAP;
  for (const Range& r : ranges) {
    Put32(mmap, 20);  // size of the rest of the entry
    Put64(mmap + 4, r.base);
    Put64(mmap + 12, r.length);
    Put32(mmap + 20, r.type);
    mmap += 24;
  }
  uint8_t* info = base + FERRY_GPA_MULTIBOOT_INFO;
  // mem_upper: the RAM from 1 MiB up to the first hole, as multiboot defines it.
  uint64_t upper_kib = (ram[0].bytes - FERRY_GPA_IMAGE) >> 10;
  Put32(info + 0, kInfoMem | kInfoCmdline | kInfoMmap);
  Put32(info + 4, kLowMemTop >> 10);
  Put32(info + 8, static_cast<uint32_t>(std::min<uint64_t>(upper_kib, UINT32_MAX)));
  Put32(info + 16, FERRY_GPA_CMDLINE);
  Put32(info + 44, static_cast<uint32_t>(ranges.size() * 24));
  Put32(info + 48, FERRY_GPA_MMAP);
  return MultibootEntry{entry, static_cast<uint32_t>(FERRY_GPA_MULTIBOOT_INFO)};
}

std::string DefaultGuestImagePath() {
  const char* env = std::getenv("FERRY_GUEST_IMAGE");
  if (env && *env) return env;
  std::string beside;
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    std::string path(exe, static_cast<size_t>(n));
    std::string dir = path.substr(0, path.rfind('/'));
    beside = dir + "/ferry-guest.elf";
    if (access(beside.c_str(), R_OK) == 0) return beside;
    // Installed: PREFIX/bin/migrate and PREFIX/lib/ferry/ferry-guest.elf (docs/packaging.md).
    std::string installed = dir + "/../lib/ferry/ferry-guest.elf";
    if (access(installed.c_str(), R_OK) == 0) return installed;
  }
  const char* bin = std::getenv("FERRY_BIN_DIR");
  if (bin && *bin) return std::string(bin) + "/ferry-guest.elf";
  return beside.empty() ? "ferry-guest.elf" : beside;
}

}  // namespace ferry
