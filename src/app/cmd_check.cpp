#include <cstdio>
#include <stdexcept>

#include "commands.h"
#include "config_loading.h"
#include "database_checks.h"
#include "exit_codes.h"
#include "walbust/io/db_inspector.h"
#include "walbust/io/replica_connection.h"

namespace walbust {

int check_command(const CheckOptions& options) {
  auto loaded = load_config_and_rules(options.config_path);
  if (!loaded) return kExitUsage;  // README "Command line": invalid configuration is a usage error
  std::printf("%s: ok (%zu rules from %zu files)\n", options.config_path.c_str(),
              loaded->rules.size(), loaded->rule_files.size());
  if (!options.db) return kExitOk;
  std::fflush(stdout);

  const DatabaseNeeds needs = database_needs(*loaded);
  std::vector<Finding> findings;
  try {
    auto conn = connect_for_inspection(loaded->config);
    // Whether the DSN's sslmode took effect: an operator expecting TLS must see it here.
    const std::string tls = conn->encryption();
    std::printf("connection: %s\n", tls.empty()
                                        ? "not encrypted (add sslmode=verify-full to postgres.dsn)"
                                        : ("encrypted (" + tls + ")").c_str());
    DbInspector inspector(*conn);
    findings = check_database(needs, inspector.inspect(needs));
    // Read replicas use the primary's password: the role is the same, replicated.
    const std::string password = read_password_file(loaded->config.postgres.password_file);
    std::vector<ReplicaFacts> replicas;
    for (const auto& dsn : loaded->config.replicas.dsns)
      replicas.push_back(inspect_replica(dsn, password));
    for (auto& f : check_replicas(replicas)) findings.push_back(std::move(f));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "walbust check --db: %s\n", one_line(e.what()).c_str());
    return kExitFailure;
  }
  return print_findings(findings) == 0 ? kExitOk : kExitFailure;
}

}  // namespace walbust
