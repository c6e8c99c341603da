#pragma once
// Text from outside (a peer, a client, a file) shown inside an error message: escaped and cut, so
// a 10 000-character or binary value never becomes a 10 KB error or a terminal escape.

#include <cstddef>
#include <string>
#include "absl/strings/string_view.h"

namespace ferry {

// The errors the agent returns to clients and peers are cut to this many bytes.
inline constexpr size_t kMaxErrorMessageBytes = 1024;

// `text` in double quotes, control and non-ASCII bytes as \xNN, cut after `max_chars` characters
// with the full length noted: "aaaa..." (10000 characters).
std::string QuotedForError(absl::string_view text, size_t max_chars = 40);

// `message` cut to at most `max_bytes` bytes (ending "... (cut)" when cut).
std::string BoundedMessage(absl::string_view message, size_t max_bytes = kMaxErrorMessageBytes);

}  // namespace ferry
