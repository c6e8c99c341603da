#include "engine/base/error_text.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

TEST(ErrorText, QuotesEscapesAndCuts) {
  EXPECT_EQ(QuotedForError("web1"), "\"web1\"");
  EXPECT_EQ(QuotedForError("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(QuotedForError(std::string("x\ny\0", 4)), "\"x\\x0ay\\x00\"");
  EXPECT_EQ(QuotedForError(std::string(10000, 'a'), 4), "\"aaaa...\" (10000 characters)");
}

TEST(ErrorText, BoundsMessages) {
  EXPECT_EQ(BoundedMessage("short"), "short");
  std::string cut = BoundedMessage(std::string(5000, 'e'), 100);
  EXPECT_EQ(cut.size(), 100u);
  EXPECT_EQ(cut.substr(91), "... (cut)");
}

}  // namespace
}  // namespace ferry
