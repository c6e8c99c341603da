#include "engine/base/error_text.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ferry {

std::string QuotedForError(absl::string_view text, size_t max_chars) {
  std::string out = "\"";
  const size_t shown = std::min(text.size(), max_chars);
  for (size_t i = 0; i < shown; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      out += absl::StrFormat("\\x%02x", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (shown < text.size()) return absl::StrCat(out, "...\" (", text.size(), " characters)");
  return out + "\"";
}

std::string BoundedMessage(absl::string_view message, size_t max_bytes) {
  if (message.size() <= max_bytes) return std::string(message);
  constexpr absl::string_view kCut = "... (cut)";
  if (max_bytes <= kCut.size()) return std::string(message.substr(0, max_bytes));
  return absl::StrCat(std::string(message.substr(0, max_bytes - kCut.size())), std::string(kCut));
}

}  // namespace ferry
