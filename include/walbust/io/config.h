#pragma once
// walbust.yaml (README "Configuration reference"): loaded and validated completely; every problem
// is reported with file:line:column and no partial configuration is ever used.
#include <optional>
#include <string>
#include <vector>

#include "walbust/core/diagnostics.h"
#include "walbust/core/redis_url.h"
#include "walbust/core/rules.h"
#include "walbust/core/settings.h"
#include "walbust/io/logging.h"
#include "walbust/io/redis_tls.h"

namespace walbust {

// -c value, else $WALBUST_CONFIG, else /etc/walbust/walbust.yaml.
[[nodiscard]] std::string default_config_path();

// Reads and validates the file; applies WALBUST_PG_DSN / WALBUST_REDIS_URL. Returns
// nullopt when diags got any error.
[[nodiscard]] std::optional<Config> load_config(const std::string& path, Diagnostics& diags);

// The rules files named by the config (globs expanded, relative paths against the
// config's directory), sorted and de-duplicated. A pattern that matches nothing is an error.
[[nodiscard]] std::vector<std::string> resolve_rule_files(const Config& config, Diagnostics& diags);

// Reads every rules file and builds the rule set. Check diags before using the result.
[[nodiscard]] RuleSet load_rule_files(const std::vector<std::string>& files, Diagnostics& diags);
// resolve_rule_files + load_rule_files.
[[nodiscard]] RuleSet load_rules(const Config& config, Diagnostics& diags);

// Rules may name targets (`targets: [name]`); each name must be a configured target.
void check_rule_targets(const Config& config, const RuleSet& rules, Diagnostics& diags);

// Reads a whole file; nullopt with a diagnostic when it cannot be read.
[[nodiscard]] std::optional<std::string> read_text_file(const std::string& path,
                                                        Diagnostics& diags);

// Reads a password file (trailing newline removed). Empty path: no password. Throws
// std::runtime_error with the path (never the content) when it cannot be read.
[[nodiscard]] std::string read_password_file(const std::string& path);

}  // namespace walbust
