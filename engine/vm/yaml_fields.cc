#include "engine/vm/yaml_fields.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/base/error_source.h"
#include "engine/base/size_parse.h"
#include "engine/base/status.h"

namespace ferry {

absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return WithErrorSource(ErrnoError(absl::StrCat("cannot read ", path)), path, "");
  std::stringstream text;
  text << in.rdbuf();
  YAML::Node root;
  try {
    root = YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    return WithErrorSource(absl::InvalidArgumentError(absl::StrCat(path, ": line ", e.mark.line + 1, ", column ",
                                                                   e.mark.column + 1, ": malformed YAML: ", e.msg)),
                           path, "");
  }
  if (!root.IsMap()) {
    return WithErrorSource(
        absl::InvalidArgumentError(absl::StrCat(path, ": expected a mapping of fields at the top level")), path, "");
  }
  return root;
}

std::string YamlMap::Field(absl::string_view key) const {
  if (where_.empty()) return std::string(key);
  if (key.empty()) return where_;
  return absl::StrCat(where_, ".", key);
}

absl::Status YamlMap::Error(absl::string_view key, absl::string_view message) const {
  return WithErrorSource(absl::InvalidArgumentError(absl::StrCat(file_, ": ", Field(key), ": ", message)), file_,
                         Field(key));
}

absl::Status YamlMap::CheckKeys(std::initializer_list<const char*> known) const {
  std::set<std::string> allowed(known.begin(), known.end());
  for (const auto& kv : node_) {
    std::string key = kv.first.Scalar();
    if (!allowed.count(key)) {
      return Error(key, absl::StrCat("unknown field (known: ", absl::StrJoin(allowed, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> YamlMap::String(const char* key, bool required) const {
  YAML::Node n = node_[key];
  if (!n.IsDefined() || n.IsNull()) {
    if (required) return Error(key, "missing (required)");
    return std::string();
  }
  if (!n.IsScalar()) return Error(key, "expected a single value");
  return n.Scalar();
}

absl::StatusOr<std::vector<std::string>> YamlMap::StringList(const char* key) const {
  std::vector<std::string> out;
  YAML::Node n = node_[key];
  if (!n.IsDefined() || n.IsNull()) return out;
  if (!n.IsSequence()) return Error(key, "expected a list");
  for (size_t i = 0; i < n.size(); ++i) {
    if (!n[i].IsScalar()) return Error(absl::StrCat(key, "[", i, "]"), "expected a single value");
    out.push_back(n[i].Scalar());
  }
  return out;
}

absl::StatusOr<uint64_t> YamlMap::ByteSize(const char* key, bool required, uint64_t fallback) const {
  ASSIGN_OR_RETURN(std::string text, String(key, required));
  if (text.empty()) return fallback;
  auto bytes = ParseByteSize(text);
  if (!bytes.ok()) return Error(key, absl::StrCat("not a size: '", text, "' (e.g. 512MiB, 4GiB)"));
  return *bytes;
}

absl::StatusOr<uint64_t> YamlMap::Uint(const char* key, bool required, uint64_t fallback) const {
  ASSIGN_OR_RETURN(std::string text, String(key, required));
  if (text.empty()) return fallback;
  uint64_t v;
  if (!absl::SimpleAtoi(text, &v)) return Error(key, absl::StrCat("not a whole number: '", text, "'"));
  return v;
}

absl::StatusOr<double> YamlMap::Rate(const char* key, double fallback) const {
  ASSIGN_OR_RETURN(std::string text, String(key, false));
  if (text.empty()) return fallback;
  auto rate = ParseRateMiBps(text);
  if (!rate.ok()) return Error(key, absl::StrCat("not a rate: '", text, "' (e.g. 50MiB/s)"));
  return *rate;
}

absl::StatusOr<YamlMap> YamlMap::Map(const char* key, bool required) const {
  YAML::Node n = node_[key];
  if (!n.IsDefined() || n.IsNull()) {
    if (required) return Error(key, "missing (required)");
    return YamlMap(file_, Field(key), YAML::Node(YAML::NodeType::Map));
  }
  if (!n.IsMap()) return Error(key, "expected a mapping of fields");
  return YamlMap(file_, Field(key), n);
}

absl::StatusOr<std::vector<YamlMap>> YamlMap::MapList(const char* key) const {
  std::vector<YamlMap> out;
  YAML::Node n = node_[key];
  if (!n.IsDefined() || n.IsNull()) return out;
  if (!n.IsSequence()) return Error(key, "expected a list");
  for (size_t i = 0; i < n.size(); ++i) {
    std::string item = absl::StrCat(key, "[", i, "]");
    if (!n[i].IsMap()) return Error(item, "expected a mapping of fields");
    out.emplace_back(file_, Field(item), n[i]);
  }
  return out;
}

}  // namespace ferry
