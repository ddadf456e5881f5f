// The one YAML section walker shared by walbust.yaml, rules files and rule test cases.
#include "walbust/core/yaml_section.h"

#include <gtest/gtest.h>

namespace walbust {
namespace {

using std::chrono::milliseconds;

std::string problems(const std::string& yaml, const std::string& name,
                     std::initializer_list<std::string_view> known) {
  Diagnostics d;
  const std::string file = "f.yaml";
  YamlSection s(file, YAML::Load(yaml), name, d);
  s.allow_only(known);
  return d.format();
}

TEST(YamlSection, ANearMissSuggestsTheKeyItResembles) {
  EXPECT_EQ(problems("slott: x\n", "postgres", {"slot", "dsn"}),
            "f.yaml:1:1: error: unknown key 'slott' in postgres (did you mean 'slot'?)\n");
}

TEST(YamlSection, AnUnrelatedKeyListsTheAllowedOnes) {
  EXPECT_EQ(problems("a: 1\nzzz: 2\n", "", {"a", "b"}),
            "f.yaml:2:1: error: unknown key 'zzz' (expected one of: a, b)\n");
}

TEST(YamlSection, ADuplicateKeyIsReportedAndTheFirstValueKept) {
  Diagnostics d;
  const std::string file = "f.yaml";
  YamlSection s(file, YAML::Load("a: 1\na: 2\n"), "x", d);
  s.allow_only({"a"});
  EXPECT_EQ(d.format(), "f.yaml:2:1: error: duplicate key 'a'\n");
  EXPECT_EQ(s.get("a").Scalar(), "1");
}

TEST(YamlSection, ANonMappingIsReportedOnceAndReadsAsAbsent) {
  Diagnostics d;
  const std::string file = "f.yaml";
  YamlSection s(file, YAML::Load("[1, 2]"), "batch", d);
  s.allow_only({"max_keys"});
  EXPECT_FALSE(s.present());
  EXPECT_EQ(s.find("max_keys"), nullptr);
  EXPECT_EQ(d.format(), "f.yaml:1:1: error: batch must be a mapping\n");
}

TEST(YamlSection, TypedReadersReportMistypedValuesWithTheirPath) {
  Diagnostics d;
  const std::string file = "f.yaml";
  YamlSection s(file, YAML::Load("t: 5\nn: 0\nb: maybe\nc: other\nok: 250ms\n"), "r", d);
  s.allow_only({"t", "n", "b", "c", "ok"});
  milliseconds t{7}, ok{0};
  std::size_t n = 9;
  bool b = false;
  std::string c = "keep";
  s.duration("t", t);
  s.size("n", n, 1, 10);
  s.boolean("b", b);
  s.choice("c", c, {"one", "two"});
  s.duration("ok", ok);
  EXPECT_EQ(t, milliseconds{7});
  EXPECT_EQ(n, 9U);
  EXPECT_EQ(c, "keep");
  EXPECT_EQ(ok, milliseconds{250});
  EXPECT_EQ(d.format(),
            "f.yaml:1:4: error: r.t must be a duration with a unit, e.g. 500ms, 10s, 5m, 1h\n"
            "f.yaml:2:4: error: r.n must be an integer from 1 to 10\n"
            "f.yaml:3:4: error: r.b must be true or false\n"
            "f.yaml:4:4: error: r.c must be one of: one, two\n");
}

}  // namespace
}  // namespace walbust
