#pragma once
// Rule sets loaded from YAML text, for tests of what rules match and render: the file is
// called r.yaml, so errors read "r.yaml:LINE:COL: ...".
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "walbust/core/rules.h"

namespace walbust::testing {

// Loads rules that must be valid; any diagnostic fails the calling test.
inline RuleSet load_ok(const std::string& yaml) {
  Diagnostics diags;
  RuleSet rules = RuleSet::load({{"r.yaml", yaml}}, diags);
  EXPECT_TRUE(diags.empty()) << diags.format();
  return rules;
}

// Loads rules that must be refused; returns every diagnostic, formatted.
inline std::string load_errors(const std::string& yaml) {
  Diagnostics diags;
  (void)RuleSet::load({{"r.yaml", yaml}}, diags);
  return diags.format();
}

inline Value T(std::string s) { return Value{Value::Kind::Text, std::move(s)}; }

}  // namespace walbust::testing
