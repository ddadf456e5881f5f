#pragma once
// One YAML mapping of walbust.yaml, a rules file or a rule test-case file, read against the
// keys it allows. Every problem becomes a diagnostic at FILE:LINE:COLUMN and nothing throws,
// so a file's problems are all reported at once. The single walker for all three file kinds:
// unknown keys (with a "did you mean" for near misses), duplicate keys and mistyped values
// read the same everywhere.
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>

#include "walbust/core/diagnostics.h"

namespace walbust {

// The text of a mapping key; yaml-cpp reads the key `null:` as a null node.
[[nodiscard]] std::string yaml_key_text(const YAML::Node& key);

class YamlSection {
 public:
  struct Entry {
    YAML::Node key;
    YAML::Node value;
  };

  // `name` says where the section sits ("postgres", "targets.cache") and prefixes value
  // errors ("postgres.slot must be a string"); empty for unnamed sections. A node that is
  // neither a mapping nor absent/null is reported as such.
  YamlSection(const std::string& file, const YAML::Node& node, std::string name,
              Diagnostics& diags);

  // Reports every key not in `known`, and every key given twice. Call once, before reading.
  void allow_only(std::initializer_list<std::string_view> known);

  // True when the node is a mapping.
  [[nodiscard]] bool present() const { return ok_; }
  // The entry for `key`, or nullptr when it is absent.
  [[nodiscard]] const Entry* find(std::string_view key) const;
  // The value for `key`; an undefined node (IsDefined() false) when absent.
  [[nodiscard]] YAML::Node get(std::string_view key) const;

  // Typed readers: leave `out` alone when the key is absent or null, report a mistyped value.
  void string(std::string_view key, std::string& out) const;
  void boolean(std::string_view key, bool& out) const;
  void size(std::string_view key, std::size_t& out, std::size_t min, std::size_t max) const;
  void duration(std::string_view key, std::chrono::milliseconds& out,
                std::chrono::milliseconds min = std::chrono::milliseconds{0}) const;
  void choice(std::string_view key, std::string& out,
              std::initializer_list<std::string_view> options) const;

  void error(const YAML::Node& node, const std::string& message) const {
    diags_.add(file_, node, message);
  }
  // "name.key", or "key" for an unnamed section.
  [[nodiscard]] std::string where(std::string_view key) const;

 private:
  std::string unknown_key_message(const std::string& key,
                                  std::initializer_list<std::string_view> known) const;

  const std::string& file_;
  YAML::Node node_;
  std::string name_;
  Diagnostics& diags_;
  bool ok_ = false;
  std::map<std::string, Entry, std::less<>> entries_;
};

}  // namespace walbust
