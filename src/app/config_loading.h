#pragma once
// Loading config and rules for a command: every problem is printed to stderr as
// FILE:LINE:COLUMN: error: MESSAGE, and nothing partial is returned.
#include <optional>
#include <string>
#include <vector>

#include "walbust/core/rules.h"
#include "walbust/io/config.h"

namespace walbust {

struct LoadedConfig {
  Config config;
  RuleSet rules;
  std::vector<std::string> rule_files;
};

[[nodiscard]] std::optional<LoadedConfig> load_config_and_rules(const std::string& path);

}  // namespace walbust
