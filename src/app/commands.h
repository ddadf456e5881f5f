#pragma once
// One function per subcommand; main.cpp parses the command line and dispatches.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "walbust/core/lsn.h"

namespace walbust {

struct RunOptions {
  std::string config_path;
  std::optional<Lsn> endpos;
};
int run_command(const RunOptions& options);

struct CheckOptions {
  std::string config_path;
  bool db = false;
};
int check_command(const CheckOptions& options);

struct DryRunOptions {
  std::string config_path;
  bool peek = false;
  std::string format = "text";  // text | json
  bool check_redis = false;
  std::optional<std::uint64_t> max_changes;
  std::optional<double> duration;  // seconds
};
int dry_run_command(const DryRunOptions& options);

struct SetupOptions {
  std::string config_path;
  bool apply = false;
};
int setup_command(const SetupOptions& options);

struct TestOptions {
  std::string config_path;
  std::vector<std::string> case_files;
};
int test_command(const TestOptions& options);

struct AuditOptions {
  std::string config_path;
  std::string target;  // empty: the only target
  std::uint64_t sample = 100000;
  std::string format = "text";  // text | json
};
int audit_command(const AuditOptions& options);

}  // namespace walbust
