// The multiboot loader on good and bad images.
#include "engine/vm/multiboot_loader.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/guest/guest_abi.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

std::string GuestImage() {
  const char* dir = std::getenv("FERRY_BIN_DIR");
  return std::string(dir ? dir : ".") + "/ferry-guest.elf";
}

class MultibootLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-loader-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto mem = GuestMemory::Create(FERRY_GUEST_MIN_MEMORY);
    ASSERT_TRUE(mem.ok()) << mem.status();
    mem_ = std::move(*mem);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::vector<uint8_t>& bytes) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return path;
  }
  // A flat image whose multiboot header (at offset 0) uses the address fields.
  static std::vector<uint8_t> AddressFieldImage(uint32_t load_addr, uint32_t bss_end, size_t size) {
    std::vector<uint8_t> img(size, 0x90);
    uint32_t flags = 1u << 16, h[8] = {FERRY_MULTIBOOT_HEADER_MAGIC, flags, 0u - (FERRY_MULTIBOOT_HEADER_MAGIC + flags),
                                       load_addr, load_addr, load_addr + static_cast<uint32_t>(size), bss_end,
                                       load_addr + 32};
    std::memcpy(img.data(), h, sizeof(h));
    return img;
  }
  std::string dir_;
  std::unique_ptr<GuestMemory> mem_;
};

TEST_F(MultibootLoaderTest, MissingImageIsNotFoundNamingThePath) {
  auto r = LoadMultibootImage(dir_ + "/nope.elf", "", *mem_);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("nope.elf"), absl::string_view::npos) << r.status();
}

TEST_F(MultibootLoaderTest, FileWithoutMultibootHeaderIsRejected) {
  std::string path = Write("plain.bin", std::vector<uint8_t>(20000, 'x'));
  auto r = LoadMultibootImage(path, "", *mem_);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("not a multiboot image"), absl::string_view::npos) << r.status();
}

TEST_F(MultibootLoaderTest, ImageLargerThanMemoryIsRejected) {
  std::string big = Write("big.bin", AddressFieldImage(0x100000, 0, mem_->size() + 4096));
  auto r = LoadMultibootImage(big, "", *mem_);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("larger than guest memory"), absl::string_view::npos) << r.status();
  // A small file whose bss reaches past the end of memory.
  std::string bss = Write("bss.bin", AddressFieldImage(0x100000, 64u << 20, 4096));
  r = LoadMultibootImage(bss, "", *mem_);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("needs guest memory up to 0x4000000"), absl::string_view::npos) << r.status();
}

TEST_F(MultibootLoaderTest, ImageOverlappingBootInfoIsRejected) {
  std::string low = Write("low.bin", AddressFieldImage(0x7000, 0, 4096));
  auto r = LoadMultibootImage(low, "", *mem_);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("overlaps the boot information"), absl::string_view::npos) << r.status();
}

TEST_F(MultibootLoaderTest, LoadsFerryGuestAndWritesBootInfo) {
  auto r = LoadMultibootImage(GuestImage(), "ws=1 rate=5", *mem_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(r->entry_eip, FERRY_GPA_IMAGE);
  EXPECT_LT(r->entry_eip, FERRY_GPA_IMAGE_LIMIT);
  EXPECT_EQ(r->info_gpa, FERRY_GPA_MULTIBOOT_INFO);
  uint32_t info[13];
  std::memcpy(info, mem_->data() + FERRY_GPA_MULTIBOOT_INFO, sizeof(info));
  EXPECT_EQ(info[0], 0x45u);                                  // mem, cmdline, mmap
  EXPECT_EQ(info[2], (mem_->size() - (1u << 20)) >> 10);      // mem_upper
  EXPECT_EQ(info[4], FERRY_GPA_CMDLINE);
  EXPECT_STREQ(reinterpret_cast<const char*>(mem_->data() + FERRY_GPA_CMDLINE), "ws=1 rate=5");
  EXPECT_EQ(info[12], FERRY_GPA_MMAP);
  uint32_t magic;
  std::memcpy(&magic, mem_->data() + FERRY_GPA_IMAGE, 4);  // the header opens the image
  EXPECT_EQ(magic, FERRY_MULTIBOOT_HEADER_MAGIC);
}

// Above 3 GiB the microVM maps the rest of the memfd at GPA 4 GiB (ram_layout.h): the memory map
// says so, and mem_upper stops at the hole as multiboot defines it.
TEST_F(MultibootLoaderTest, MemoryMapListsRamAboveFourGiB) {
  auto big = GuestMemory::Create(4608ull << 20);  // a memfd: untouched pages cost nothing
  ASSERT_TRUE(big.ok()) << big.status();
  auto r = LoadMultibootImage(GuestImage(), "", **big);
  ASSERT_TRUE(r.ok()) << r.status();
  const uint8_t* base = (*big)->data();
  uint32_t info[13];
  std::memcpy(info, base + FERRY_GPA_MULTIBOOT_INFO, sizeof(info));
  EXPECT_EQ(info[2], (FERRY_GPA_LOW_RAM_END - (1u << 20)) >> 10);  // mem_upper
  struct Entry {
    uint64_t base, length;
    uint32_t type;
    bool operator==(const Entry&) const = default;
  };
  std::vector<Entry> entries;
  for (uint32_t off = 0; off < info[11]; off += 24) {
    Entry e;
    std::memcpy(&e.base, base + FERRY_GPA_MMAP + off + 4, 8);
    std::memcpy(&e.length, base + FERRY_GPA_MMAP + off + 12, 8);
    std::memcpy(&e.type, base + FERRY_GPA_MMAP + off + 20, 4);
    entries.push_back(e);
  }
  std::vector<Entry> want = {{0, 0x9fc00, 1},
                             {0x9fc00, 0x100000 - 0x9fc00, 2},
                             {0x100000, FERRY_GPA_LOW_RAM_END - 0x100000, 1},
                             {FERRY_GPA_HIGH_RAM, (4608ull << 20) - FERRY_GPA_LOW_RAM_END, 1}};
  ASSERT_EQ(entries.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(entries[i] == want[i]) << "entry " << i << ": base 0x" << std::hex << entries[i].base << " length 0x"
                                       << entries[i].length << " type " << entries[i].type;
  }
}

TEST_F(MultibootLoaderTest, CommandLineTooLongIsRejected) {
  auto r = LoadMultibootImage(GuestImage(), std::string(FERRY_CMDLINE_MAX, 'a'), *mem_);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("command line"), absl::string_view::npos) << r.status();
}

TEST(DefaultGuestImagePathTest, EnvironmentOverrideWins) {
  setenv("FERRY_GUEST_IMAGE", "/somewhere/guest.elf", 1);
  EXPECT_EQ(DefaultGuestImagePath(), "/somewhere/guest.elf");
  unsetenv("FERRY_GUEST_IMAGE");
  EXPECT_NE(DefaultGuestImagePath().find("ferry-guest.elf"), std::string::npos);
}

}  // namespace
}  // namespace ferry
