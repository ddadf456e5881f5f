#include "walbust/core/diagnostics.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

namespace walbust {
namespace {

TEST(Diagnostics, FormatsFileLineColumn) {
  Diagnostics d;
  d.add("rules.yaml", 3, 7, "unknown key 'tabel'");
  d.add("walbust.yaml", 0, 0, "cannot open file");
  EXPECT_EQ(d.format(),
            "rules.yaml:3:7: error: unknown key 'tabel'\nwalbust.yaml: error: cannot open file\n");
}

TEST(Diagnostics, TakesPositionFromYamlNode) {
  const YAML::Node root = YAML::Load("a: 1\nrules:\n  - name: x\n    tabel: y\n");
  Diagnostics d;
  d.add("r.yaml", root["rules"][0]["tabel"], "unknown key");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d.items()[0].line, 4);
  EXPECT_EQ(d.items()[0].column, 12);
}

}  // namespace
}  // namespace walbust
