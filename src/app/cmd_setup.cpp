#include <cstdio>
#include <optional>
#include <stdexcept>

#include "commands.h"
#include "config_loading.h"
#include "database_checks.h"
#include "exit_codes.h"
#include "walbust/core/setup_sql.h"
#include "walbust/io/db_inspector.h"

namespace walbust {

namespace {

// The first comment line summarises a statement in one sentence.
std::string summary(const SetupStatement& s) {
  return s.comment.empty() ? one_line(s.sql) : s.comment.front();
}

// Runs each statement on its own (autocommit): the slot must be created outside any
// transaction that wrote, after the publication is committed.
int apply(PgReplicationConnection& conn, const DatabaseNeeds& needs, const SetupScript& script) {
  std::size_t changed = 0;
  for (const auto& s : script.statements) {
    if (s.sql.empty()) {
      std::printf("note  %s\n", summary(s).c_str());
      continue;
    }
    if (s.in_place) {
      std::printf("skip  %s (already in place)\n", summary(s).c_str());
      continue;
    }
    try {
      conn.execute(s.sql);
    } catch (const PgError& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "walbust setup --apply: %s\n  while running: %s\n",
                   one_line(e.what()).c_str(), one_line(s.sql).c_str());
      return kExitFailure;
    }
    if (s.session) continue;
    ++changed;
    std::printf("done  %s\n", summary(s).c_str());
  }
  std::printf("%zu statement%s applied\n\n", changed, changed == 1 ? "" : "s");
  std::fflush(stdout);
  DbInspector inspector(conn);
  return print_findings(check_database(needs, inspector.inspect(needs))) == 0 ? kExitOk
                                                                              : kExitFailure;
}

}  // namespace

int setup_command(const SetupOptions& options) {
  auto loaded = load_config_and_rules(options.config_path);
  if (!loaded) return kExitUsage;
  const DatabaseNeeds needs = database_needs(*loaded);

  std::unique_ptr<PgReplicationConnection> conn;
  std::optional<DatabaseFacts> facts;
  std::string why_not;
  try {
    conn = connect_for_inspection(loaded->config);
    DbInspector inspector(*conn);
    facts = inspector.inspect(needs);
  } catch (const std::exception& e) {
    why_not = one_line(e.what());
    if (options.apply) {
      std::fprintf(stderr, "walbust setup --apply: %s\n", why_not.c_str());
      return kExitFailure;
    }
    std::fprintf(stderr,
                 "walbust setup: cannot inspect the database, printing the conservative SQL: %s\n",
                 why_not.c_str());
  }

  SetupScript script = setup_script(needs, facts ? &*facts : nullptr);
  script.header.insert(script.header.begin() + 1, "Configuration: " + options.config_path);
  if (!facts) script.header.push_back("Inspecting failed: " + why_not);
  try {
    if (options.apply) return apply(*conn, needs, script);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "walbust setup --apply: %s\n", one_line(e.what()).c_str());
    return kExitFailure;
  }
  std::fputs(script.text().c_str(), stdout);
  return kExitOk;
}

}  // namespace walbust
