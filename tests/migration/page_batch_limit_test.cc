// A memory batch is refused whole when it carries more page data than the protocol allows.
#include <gtest/gtest.h>

#include "engine/memory/page.h"
#include "engine/migration/page_batches.h"
#include "engine/migration/protocol.h"

namespace ferry {
namespace {

v1::MemoryBatch BatchOf(uint32_t pages) {
  v1::MemoryBatch b;
  b.set_round(1);
  auto* run = b.add_runs();
  run->set_first_page(0);
  run->set_count(pages);
  run->set_data(std::string(uint64_t{pages} * kPageSize, 'x'));
  return b;
}

TEST(PageBatchLimit, OneMebibyteIsAcceptedMoreIsRefusedUnwritten) {
  auto mem = GuestMemory::Create(16ull << 20);
  ASSERT_TRUE(mem.ok()) << mem.status();
  const uint32_t limit_pages = static_cast<uint32_t>(kMaxBatchDataBytes / kPageSize);
  EXPECT_TRUE(ApplyMemoryBatch(BatchOf(limit_pages), **mem, nullptr).ok());
  std::memset((*mem)->data(), 0, kMaxBatchDataBytes);
  absl::Status st = ApplyMemoryBatch(BatchOf(limit_pages * 5), **mem, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("the limit is 1048576"), std::string::npos) << st.message();
  EXPECT_EQ((*mem)->data()[0], 0) << "nothing of a refused batch is written";
}

}  // namespace
}  // namespace ferry
