#pragma once
// Rule unit tests (README "Try your rules safely"): YAML cases that describe a change and the keys
// it must produce, checked against a RuleSet without any server.
#include <string>
#include <vector>

#include "walbust/core/diagnostics.h"
#include "walbust/core/rules.h"

namespace walbust {

struct CaseResult {
  std::string file;
  std::string name;
  bool passed = false;
  // Human-readable difference when failed, e.g.
  // "delete: missing [category_posts_4]; unexpected [category_posts_9]".
  std::string difference;
};

// Parses a cases file and runs every case. Problems in the file itself go to `diags`
// (file:line:column) and produce no results for the broken cases.
[[nodiscard]] std::vector<CaseResult> run_rule_cases(const RuleSet& rules, const RuleSource& cases,
                                                     Diagnostics& diags);

}  // namespace walbust
