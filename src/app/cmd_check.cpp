#include <cstdio>

#include "commands.h"
#include "config_loading.h"
#include "exit_codes.h"

namespace walbust {

int check_command(const CheckOptions& options) {
  auto loaded = load_config_and_rules(options.config_path);
  if (!loaded) return kExitFailure;
  std::printf("%s: ok (%zu rules from %zu files)\n", options.config_path.c_str(), loaded->rules.size(),
              loaded->rule_files.size());
  if (options.db) {
    std::fprintf(stderr, "walbust check --db: not available in this build\n");
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace walbust
