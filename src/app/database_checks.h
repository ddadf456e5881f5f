#pragma once
// What check --db and setup share: the needs derived from the loaded rules, an ordinary
// SQL connection from the config, and printing findings.
#include <memory>
#include <string>
#include <vector>

#include "config_loading.h"
#include "walbust/core/db_check.h"
#include "walbust/core/message_text.h"
#include "walbust/io/pg_replication.h"

namespace walbust {

[[nodiscard]] DatabaseNeeds database_needs(const LoadedConfig& loaded);

// Connects without replication. Throws std::runtime_error with a one-line message naming
// the server (password redacted) when the password file cannot be read or the connection fails.
[[nodiscard]] std::unique_ptr<PgReplicationConnection> connect_for_inspection(const Config& config);

// Prints each finding and the summary to stdout; returns the number of problems.
std::size_t print_findings(const std::vector<Finding>& findings);

}  // namespace walbust
