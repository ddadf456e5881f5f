#include "walbust/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace walbust {

void setup_logging(const LogSettings& settings) {
  auto logger = spdlog::stderr_logger_mt("walbust");
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  logger->set_level(spdlog::level::from_str(settings.level));
  spdlog::set_default_logger(logger);
}

}  // namespace walbust
