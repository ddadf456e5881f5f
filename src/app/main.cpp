// walbust: Redis cache invalidation from PostgreSQL logical replication.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "commands.h"
#include "exit_codes.h"
#include "walbust/config.h"
#include "walbust/version.h"

int main(int argc, char** argv) {
  using namespace walbust;
  CLI::App app{"walbust: deletes Redis cache keys derived from PostgreSQL row changes, read from logical "
               "replication.\nConfiguration: -c FILE, else $WALBUST_CONFIG, else /etc/walbust/walbust.yaml."};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");

  std::string config_path;
  auto add_config = [&](CLI::App* cmd) {
    cmd->add_option("-c,--config", config_path, "Configuration file (default $WALBUST_CONFIG or /etc/walbust/walbust.yaml)");
  };

  RunOptions run;
  std::string endpos;
  auto* run_cmd = app.add_subcommand("run", "Run the daemon: stream changes and delete the keys their rules derive");
  add_config(run_cmd);
  run_cmd->add_option("--endpos", endpos,
                      "Stop with exit 0 once every transaction up to this LSN is deleted and acknowledged");

  CheckOptions check;
  auto* check_cmd = app.add_subcommand(
      "check",
      "Validate the configuration and rules files (exit 2 on errors). With --db, also check the live database and "
      "print one line per check: 'ok    ...' or 'FAIL  ... ; fix: SQL', then 'N checks, N problems' (exit 1 on "
      "problems or when the database is unreachable)");
  add_config(check_cmd);
  check_cmd->add_flag("--db", check.db,
                      "Also check the live database: wal_level, max_replication_slots, max_wal_senders, the role's "
                      "REPLICATION attribute, the publication (exists, publishes the rules' operations, contains "
                      "every rule table), every table and column a rule names, REPLICA IDENTITY FULL where rules "
                      "need previous values, and the slot (pgoutput, logical, this database, not lost)");

  SetupOptions setup;
  auto* setup_cmd = app.add_subcommand(
      "setup",
      "Print the idempotent SQL that prepares the database for the rules: the publication with the rule tables and "
      "operations, REPLICA IDENTITY FULL where rules need previous values, and the slot. Tailored to the database "
      "when it can connect (else conservative, with a comment saying why). Pipe it into "
      "'psql -v ON_ERROR_STOP=1', or use --apply");
  add_config(setup_cmd);
  setup_cmd->add_flag("--apply", setup.apply,
                      "Run the statements (one by one, autocommit) instead of printing them, skipping what is "
                      "already in place, then run the checks of check --db (exit 1 on failure or problems)");

  TestOptions test;
  auto* test_cmd = app.add_subcommand("test", "Run rule test cases (CASES.yaml files) against the configured rules");
  add_config(test_cmd);
  test_cmd->add_option("cases", test.case_files, "Test case files")->required();

  DryRunOptions dry;
  std::uint64_t max_changes = 0;
  double duration = 0;
  auto* dry_cmd = app.add_subcommand(
      "dry-run", "Show what run would delete, on the real replication stream, without writing to Redis or moving "
                 "the production slot");
  add_config(dry_cmd);
  dry_cmd->add_flag("--peek", dry.peek,
                    "Read the pending backlog of the configured slot (pg_logical_slot_peek_binary_changes; nothing "
                    "is consumed) instead of following new changes on a temporary slot");
  dry_cmd->add_option("--format", dry.format, "Output format: text (default) or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}));
  dry_cmd->add_flag("--check-redis", dry.check_redis,
                    "Ask Redis (EXISTS, SCAN; read-only) whether each key exists and report the share that would hit");
  auto* max_opt = dry_cmd->add_option("--max-changes", max_changes, "Stop after N row changes")->check(CLI::PositiveNumber);
  auto* dur_opt = dry_cmd->add_option("--duration", duration, "Stop after SECONDS")->check(CLI::PositiveNumber);

  AuditOptions audit;
  auto* audit_cmd = app.add_subcommand(
      "audit",
      "Find cached data no rule invalidates: SCAN the Redis target (read-only, COUNT 1000), group "
      "keys into families (UUIDs, 32-hex runs and digit runs as '*') and report the families no "
      "rule's key could match, with key counts, keys without TTL and an example; also the "
      "publication's tables without rules. Exit 0 when every family is covered, 1 when not");
  add_config(audit_cmd);
  audit_cmd->add_option("--target", audit.target, "The Redis target to audit (needed with several)");
  audit_cmd->add_option("--sample", audit.sample, "Scan at most N keys (default 100000)")
      ->check(CLI::PositiveNumber);
  audit_cmd->add_option("--format", audit.format, "Output format: text (default) or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}));

  app.add_subcommand("version", "Print the version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (config_path.empty()) config_path = default_config_path();

  if (app.got_subcommand("version")) {
    std::printf("walbust %s\n", kVersion);
    return kExitOk;
  }
  if (run_cmd->parsed()) {
    run.config_path = config_path;
    if (!endpos.empty()) {
      run.endpos = parse_lsn(endpos);
      if (!run.endpos) {
        std::fprintf(stderr, "walbust run: --endpos: '%s' is not an LSN (expected e.g. 0/1A2B3C8)\n", endpos.c_str());
        return kExitUsage;
      }
    }
    return run_command(run);
  }
  if (check_cmd->parsed()) {
    check.config_path = config_path;
    return check_command(check);
  }
  if (setup_cmd->parsed()) {
    setup.config_path = config_path;
    return setup_command(setup);
  }
  if (dry_cmd->parsed()) {
    dry.config_path = config_path;
    if (max_opt->count() > 0) dry.max_changes = max_changes;
    if (dur_opt->count() > 0) dry.duration = duration;
    return dry_run_command(dry);
  }
  if (audit_cmd->parsed()) {
    audit.config_path = config_path;
    return audit_command(audit);
  }
  if (test_cmd->parsed()) {
    test.config_path = config_path;
    return test_command(test);
  }
  return kExitUsage;
}
