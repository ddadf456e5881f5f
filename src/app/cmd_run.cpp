#include <spdlog/spdlog.h>

#include "commands.h"
#include "config_loading.h"
#include "exit_codes.h"
#include "replicator.h"
#include "signals.h"

namespace walbust {

int run_command(const RunOptions& options) {
  Signals::install();
  auto loaded = load_config_and_rules(options.config_path);
  if (!loaded) return kExitUsage;
  setup_logging(loaded->config.log);
  try {
    Replicator replicator(std::move(loaded->config), std::move(loaded->rules), options.endpos);
    return replicator.run();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return kExitFailure;
  }
}

}  // namespace walbust
