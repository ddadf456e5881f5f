#include "database_checks.h"

#include <cstdio>
#include <stdexcept>

#include "walbust/io/logging.h"
#include "walbust/io/state_store.h"

namespace walbust {

DatabaseNeeds database_needs(const LoadedConfig& loaded) {
  DatabaseNeeds needs;
  needs.tables = loaded.rules.table_needs();
  for (std::uint32_t i = 0; i < loaded.rules.size(); ++i)
    needs.rules.push_back(loaded.rules.rule(i));
  needs.publication = loaded.config.postgres.publication;
  needs.slot = loaded.config.postgres.slot;
  needs.create_slot = loaded.config.postgres.create_slot;
  // An unreadable state file only loses the gap check here; run reports it.
  try {
    const StateStore store(loaded.config.state_dir, needs.slot);
    if (auto state = store.load(); state && state->slot == needs.slot) {
      needs.streamed =
          DatabaseNeeds::Streamed{state->database, state->acknowledged_lsn, store.path()};
    }
  } catch (const std::exception&) {
  }
  return needs;
}

std::unique_ptr<PgReplicationConnection> connect_for_inspection(const Config& config) {
  const std::string where = redact_conninfo(config.postgres.dsn);
  std::string password;
  try {
    password = read_password_file(config.postgres.password_file);
  } catch (const std::exception& e) {
    throw std::runtime_error(one_line(e.what()));
  }
  auto conn = std::make_unique<PgReplicationConnection>(config.postgres.dsn, password,
                                                        /*replication=*/false);
  try {
    conn->connect();
  } catch (const PgError& e) {
    throw std::runtime_error(one_line(e.what()) + " (postgres.dsn: " + where + ")");
  }
  return conn;
}

std::size_t print_findings(const std::vector<Finding>& findings) {
  for (const auto& f : findings) std::printf("%s\n", format_finding(f).c_str());
  std::printf("%s\n", format_summary(findings).c_str());
  std::fflush(stdout);
  return count_problems(findings);
}

}  // namespace walbust
