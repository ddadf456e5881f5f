#pragma once
// One function per subcommand; main.cpp parses the command line and dispatches.
#include <optional>
#include <string>
#include <vector>

#include "walbust/lsn.h"

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

struct TestOptions {
  std::string config_path;
  std::vector<std::string> case_files;
};
int test_command(const TestOptions& options);

}  // namespace walbust
