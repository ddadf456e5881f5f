#include <cstdio>

#include "commands.h"
#include "config_loading.h"
#include "exit_codes.h"
#include "walbust/core/rule_cases.h"

namespace walbust {

int test_command(const TestOptions& options) {
  auto loaded = load_config_and_rules(options.config_path);
  if (!loaded) return kExitUsage;
  std::size_t passed = 0;
  std::size_t failed = 0;
  bool broken = false;
  for (const auto& file : options.case_files) {
    Diagnostics diags;
    const auto text = read_text_file(file, diags);
    std::vector<CaseResult> results;
    if (text) results = run_rule_cases(loaded->rules, RuleSource{file, *text}, diags);
    if (!diags.empty()) {
      std::fputs(diags.format().c_str(), stderr);
      broken = true;
    }
    for (const auto& r : results) {
      if (r.passed) {
        ++passed;
        std::printf("ok    %s: %s\n", file.c_str(), r.name.c_str());
      } else {
        ++failed;
        std::printf("FAIL  %s: %s: %s\n", file.c_str(), r.name.c_str(), r.difference.c_str());
      }
    }
  }
  std::printf("%zu passed, %zu failed\n", passed, failed);
  std::fflush(stdout);
  if (broken) return kExitUsage;
  return failed == 0 ? kExitOk : kExitFailure;
}

}  // namespace walbust
