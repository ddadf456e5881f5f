// Every shipped rules file loads without a diagnostic and passes its *.test.yaml cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "walbust/core/rule_cases.h"
#include "walbust/core/rules.h"

namespace walbust {
namespace {

namespace fs = std::filesystem;

const fs::path kRoot = WALBUST_SOURCE_DIR;

bool is_cases_file(const fs::path& p) {
  const std::string name = p.filename().string();
  return name.size() > 10 && name.ends_with(".test.yaml");
}

RuleSource read_source(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream text;
  text << in.rdbuf();
  return {p.lexically_relative(kRoot).string(), text.str()};
}

std::vector<fs::path> rules_files() {
  std::vector<fs::path> out;
  for (const auto* dir : {"rules", "rules/examples"}) {
    for (const auto& entry : fs::directory_iterator(kRoot / dir)) {
      const auto& p = entry.path();
      if (p.extension() == ".yaml" && !is_cases_file(p)) out.push_back(p);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Examples, ShipsTheRulesFilesUsersAreToldAbout) {
  for (const auto* name : {"rules/blog.yaml", "rules/blog.test.yaml", "rules/examples/django.yaml",
                           "rules/examples/django.test.yaml", "rules/examples/patterns.yaml",
                           "rules/examples/patterns.test.yaml"}) {
    EXPECT_TRUE(fs::exists(kRoot / name)) << name;
  }
}

TEST(Examples, EveryRulesFileLoadsCleanlyAndPassesItsCases) {
  const auto files = rules_files();
  ASSERT_GE(files.size(), 3u);
  for (const auto& path : files) {
    SCOPED_TRACE(path.string());
    Diagnostics diags;
    const RuleSet rules = RuleSet::load({read_source(path)}, diags);
    EXPECT_TRUE(diags.empty()) << diags.format();
    EXPECT_GT(rules.size(), 0u);

    fs::path cases = path;
    cases.replace_extension(".test.yaml");
    ASSERT_TRUE(fs::exists(cases)) << "no cases file for " << path;
    Diagnostics case_diags;
    const auto results = run_rule_cases(rules, read_source(cases), case_diags);
    EXPECT_TRUE(case_diags.empty()) << case_diags.format();
    EXPECT_GE(results.size(), 3u);
    for (const auto& r : results) {
      EXPECT_TRUE(r.passed) << r.file << ": " << r.name << ": " << r.difference;
    }
  }
}

TEST(Examples, AllRulesFilesLoadTogetherWithUniqueNames) {
  std::vector<RuleSource> sources;
  for (const auto& path : rules_files()) sources.push_back(read_source(path));
  Diagnostics diags;
  const RuleSet rules = RuleSet::load(sources, diags);
  EXPECT_TRUE(diags.empty()) << diags.format();
}

}  // namespace
}  // namespace walbust
