#include "engine/host/host_memory.h"

#include <gtest/gtest.h>

#include "engine/host/cpu_offer.h"

namespace ferry {
namespace {

TEST(HostMemory, ParsesMemAvailable) {
  auto got = ParseMemAvailable("MemTotal:       16318480 kB\nMemFree:         1022332 kB\nMemAvailable:    9480220 kB\n");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, 9480220ull * 1024);
  EXPECT_FALSE(ParseMemAvailable("MemTotal: 1 kB\n").ok());
  EXPECT_FALSE(ParseMemAvailable("MemAvailable: lots\n").ok());
  auto here = ReadMemAvailableBytes();
  ASSERT_TRUE(here.ok()) << here.status();
  EXPECT_GT(*here, 0u);
}

TEST(CpuOffer, RefusesFeaturesTheHostLacksNamingThem) {
  EXPECT_TRUE(CheckCpuFeaturesOffered({"sse2", "avx2"}, {"avx2", "sse2", "sse4.1"}).ok());
  absl::Status st = CheckCpuFeaturesOffered({"sse2", "avx512f", "bogus"}, {"sse2"});
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("\"avx512f\", \"bogus\""), std::string::npos) << st.message();
  EXPECT_TRUE(CheckCpuFeaturesOffered({}, {}).ok());
}

}  // namespace
}  // namespace ferry
