// walbust: Redis cache invalidation from PostgreSQL logical replication.
//
// main parses the command line and dispatches: each add_* function declares one subcommand
// with its options and returns what runs it once parsed; the commands live in cmd_*.cpp.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "commands.h"
#include "exit_codes.h"
#include "walbust/io/config.h"
#include "walbust/version.h"

namespace walbust {
namespace {

using Dispatch = std::function<int(const std::string& config_path)>;

struct Subcommands {
  CLI::App& app;
  std::string& config_path;
  std::vector<std::pair<CLI::App*, Dispatch>> entries;

  CLI::App* add(const std::string& name, const std::string& description, bool with_config = true) {
    auto* cmd = app.add_subcommand(name, description);
    if (with_config) {
      cmd->add_option("-c,--config", config_path,
                      "Configuration file (default $WALBUST_CONFIG or /etc/walbust/walbust.yaml)");
    }
    return cmd;
  }
};

void add_run(Subcommands& s) {
  auto endpos = std::make_shared<std::string>();
  auto* cmd = s.add("run", "Run the daemon: stream changes and delete the keys their rules derive");
  cmd->add_option(
      "--endpos", *endpos,
      "Stop with exit 0 once every transaction up to this LSN is deleted and acknowledged");
  s.entries.emplace_back(cmd, [endpos](const std::string& config_path) {
    RunOptions run{config_path, std::nullopt};
    if (!endpos->empty()) {
      run.endpos = parse_lsn(*endpos);
      if (!run.endpos) {
        std::fprintf(stderr,
                     "walbust run: --endpos: '%s' is not an LSN (expected e.g. 0/1A2B3C8)\n",
                     endpos->c_str());
        return kExitUsage;
      }
    }
    return run_command(run);
  });
}

void add_check(Subcommands& s) {
  auto check = std::make_shared<CheckOptions>();
  auto* cmd = s.add("check",
                    "Validate the configuration and rules files (exit 2 on errors). With --db, "
                    "also check the live database and "
                    "print one line per check: 'ok    ...' or 'FAIL  ... ; fix: SQL', then 'N "
                    "checks, N problems' (exit 1 on "
                    "problems or when the database is unreachable)");
  cmd->add_flag(
      "--db", check->db,
      "Also check the live database: wal_level, max_replication_slots, max_wal_senders, the role's "
      "REPLICATION attribute, the publication (exists, publishes the rules' operations, contains "
      "every rule table), every table and column a rule names, REPLICA IDENTITY FULL where rules "
      "need previous values, and the slot (pgoutput, logical, this database, not lost)");
  s.entries.emplace_back(cmd, [check](const std::string& config_path) {
    check->config_path = config_path;
    return check_command(*check);
  });
}

void add_setup(Subcommands& s) {
  auto setup = std::make_shared<SetupOptions>();
  auto* cmd =
      s.add("setup",
            "Print the idempotent SQL that prepares the database for the rules: the publication "
            "with the rule tables and "
            "operations, REPLICA IDENTITY FULL where rules need previous values, and the slot. "
            "Tailored to the database "
            "when it can connect (else conservative, with a comment saying why). Pipe it into "
            "'psql -v ON_ERROR_STOP=1', or use --apply");
  cmd->add_flag(
      "--apply", setup->apply,
      "Run the statements (one by one, autocommit) instead of printing them, skipping what is "
      "already in place, then run the checks of check --db (exit 1 on failure or problems)");
  s.entries.emplace_back(cmd, [setup](const std::string& config_path) {
    setup->config_path = config_path;
    return setup_command(*setup);
  });
}

void add_test(Subcommands& s) {
  auto test = std::make_shared<TestOptions>();
  auto* cmd = s.add("test", "Run rule test cases (CASES.yaml files) against the configured rules");
  cmd->add_option("cases", test->case_files, "Test case files")->required();
  s.entries.emplace_back(cmd, [test](const std::string& config_path) {
    test->config_path = config_path;
    return test_command(*test);
  });
}

void add_dry_run(Subcommands& s) {
  struct State {
    DryRunOptions options;
    std::uint64_t max_changes = 0;
    double duration = 0;
    CLI::Option* max_opt = nullptr;
    CLI::Option* dur_opt = nullptr;
  };
  auto st = std::make_shared<State>();
  auto* cmd = s.add("dry-run",
                    "Show what run would delete, on the real replication stream, without writing "
                    "to Redis or moving "
                    "the production slot");
  cmd->add_flag("--peek", st->options.peek,
                "Read the pending backlog of the configured slot "
                "(pg_logical_slot_peek_binary_changes; nothing "
                "is consumed) instead of following new changes on a temporary slot");
  cmd->add_option("--format", st->options.format,
                  "Output format: text (default) or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}));
  cmd->add_flag("--check-redis", st->options.check_redis,
                "Ask Redis (EXISTS, SCAN; read-only) whether each key exists and report the share "
                "that would hit");
  st->max_opt = cmd->add_option("--max-changes", st->max_changes, "Stop after N row changes")
                    ->check(CLI::PositiveNumber);
  st->dur_opt =
      cmd->add_option("--duration", st->duration, "Stop after SECONDS")->check(CLI::PositiveNumber);
  s.entries.emplace_back(cmd, [st](const std::string& config_path) {
    st->options.config_path = config_path;
    if (st->max_opt->count() > 0) st->options.max_changes = st->max_changes;
    if (st->dur_opt->count() > 0) st->options.duration = st->duration;
    return dry_run_command(st->options);
  });
}

void add_audit(Subcommands& s) {
  auto audit = std::make_shared<AuditOptions>();
  auto* cmd = s.add(
      "audit",
      "Find cached data no rule invalidates: SCAN the Redis target (read-only, COUNT 1000), group "
      "keys into families (UUIDs, 32-hex runs and digit runs as '*') and report the families no "
      "rule's key could match, with key counts, keys without TTL and an example; also the "
      "publication's tables without rules. Exit 0 when every family is covered, 1 when not");
  cmd->add_option("--target", audit->target, "The Redis target to audit (needed with several)");
  cmd->add_option("--sample", audit->sample, "Scan at most N keys (default 100000)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--format", audit->format,
                  "Output format: text (default) or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}));
  s.entries.emplace_back(cmd, [audit](const std::string& config_path) {
    audit->config_path = config_path;
    return audit_command(*audit);
  });
}

void add_version(Subcommands& s) {
  auto* cmd = s.add("version", "Print the version", /*with_config=*/false);
  s.entries.emplace_back(cmd, [](const std::string&) {
    std::printf("walbust %s\n", kVersion);
    return kExitOk;
  });
}

}  // namespace
}  // namespace walbust

int main(int argc, char** argv) {
  using namespace walbust;
  CLI::App app{
      "walbust: deletes Redis cache keys derived from PostgreSQL row changes, read from logical "
      "replication.\nConfiguration: -c FILE, else $WALBUST_CONFIG, else "
      "/etc/walbust/walbust.yaml."};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");

  std::string config_path;
  Subcommands subcommands{app, config_path, {}};
  for (auto add : {add_run, add_check, add_setup, add_test, add_dry_run, add_audit, add_version})
    add(subcommands);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (config_path.empty()) config_path = default_config_path();
  for (const auto& [cmd, dispatch] : subcommands.entries) {
    if (cmd->parsed()) return dispatch(config_path);
  }
  return kExitUsage;
}
