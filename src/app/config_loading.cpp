#include "config_loading.h"

#include <cstdio>

namespace walbust {

std::optional<LoadedConfig> load_config_and_rules(const std::string& path) {
  Diagnostics diags;
  auto config = load_config(path, diags);
  std::optional<LoadedConfig> out;
  if (config) {
    auto files = resolve_rule_files(*config, diags);
    RuleSet rules = load_rule_files(files, diags);
    if (diags.empty()) check_rule_targets(*config, rules, diags);
    if (diags.empty()) out = LoadedConfig{std::move(*config), std::move(rules), std::move(files)};
  }
  if (!diags.empty()) {
    std::fputs(diags.format().c_str(), stderr);
    std::fprintf(stderr, "walbust: %zu error(s) in the configuration\n", diags.size());
  }
  return out;
}

}  // namespace walbust
