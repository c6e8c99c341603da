#pragma once
// Reading Ferry's YAML files (VM specs, host files) so that every error names the file and the
// field: "vm.yaml: disks[1].size: not a size: 'ten'". yaml-cpp throws; these helpers do not.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ferry {

// One YAML file's root mapping. Error if unreadable, malformed (with line and column) or not a
// mapping.
absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path);

// A mapping inside `file` at field path `where` ("" for the root, "disks[1]", "cpu").
class YamlMap {
 public:
  YamlMap(const std::string& file, std::string where, YAML::Node node)
      : file_(file), where_(std::move(where)), node_(std::move(node)) {}

  // InvalidArgument "<file>: <where.key>: <message>".
  absl::Status Error(absl::string_view key, absl::string_view message) const;
  std::string Field(absl::string_view key) const;

  bool Has(const char* key) const { return node_[key].IsDefined() && !node_[key].IsNull(); }
  // Rejects keys not in `known`, so a typo is an error rather than a silently ignored field.
  absl::Status CheckKeys(std::initializer_list<const char*> known) const;

  absl::StatusOr<std::string> String(const char* key, bool required) const;
  absl::StatusOr<std::vector<std::string>> StringList(const char* key) const;
  absl::StatusOr<uint64_t> ByteSize(const char* key, bool required, uint64_t fallback) const;
  absl::StatusOr<uint64_t> Uint(const char* key, bool required, uint64_t fallback) const;
  absl::StatusOr<double> Rate(const char* key, double fallback) const;
  // The mapping at `key` (required: error if absent; else an empty map).
  absl::StatusOr<YamlMap> Map(const char* key, bool required) const;
  // Each element of the sequence at `key`, which must be a mapping.
  absl::StatusOr<std::vector<YamlMap>> MapList(const char* key) const;

 private:
  const std::string& file_;
  std::string where_;
  YAML::Node node_;
};

}  // namespace ferry
