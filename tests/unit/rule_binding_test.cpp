#include "walbust/core/rule_binding.h"

#include <gtest/gtest.h>

#include "support/rules_text.h"

namespace walbust {
namespace {

using testing::load_ok;

const char* kRules = R"(version: 1
rules:
  - name: ev-pages
    table: ev
    delete: ["ev_{id}", "region_{region}"]
  - name: post-pages
    table: post
    delete: ["post_{id}"]
  - name: eu-only
    table: ev_eu
    delete: ["eu_{id}"]
)";

CatalogTable table(std::uint32_t oid, std::string name, char relkind = 'r',
                   std::vector<std::uint32_t> ancestors = {}, bool published = true) {
  CatalogTable t;
  t.oid = oid;
  t.schema = "public";
  t.name = std::move(name);
  t.relkind = relkind;
  t.ancestors = std::move(ancestors);
  t.columns = {"id", "region", "v"};
  t.published = published;
  return t;
}

CatalogSnapshot snapshot(std::vector<CatalogTable> tables, bool via_root = false) {
  CatalogSnapshot s;
  s.publication = "walbust";
  s.publication_exists = true;
  s.via_root = via_root;
  s.tables = std::move(tables);
  return s;
}

Change change_on(std::uint32_t oid, std::string name, std::string id = "7",
                 std::string region = "eu") {
  auto rel = std::make_shared<Relation>();
  rel->oid = oid;
  rel->schema = "public";
  rel->name = std::move(name);
  for (const char* c : {"id", "region", "v"}) rel->columns.push_back(Column{c, 25, -1, false});
  Change c;
  c.op = Op::Insert;
  c.relation = rel;
  c.new_row = Row{Value{Value::Kind::Text, std::move(id)}, Value{Value::Kind::Text, region},
                  Value{Value::Kind::Null, {}}};
  return c;
}

std::vector<std::string> keys(RuleBinding& b, const RuleSet& rules, const Change& c) {
  std::vector<Action> out;
  b.plan(rules, c, out);
  std::vector<std::string> k;
  for (const auto& a : out) k.push_back(a.key);
  std::sort(k.begin(), k.end());
  return k;
}

std::map<std::string, std::string> unbound(const RuleBinding& b, const RuleSet& rules) {
  std::map<std::string, std::string> out;
  for (const auto& u : b.unbound()) out[rules.rule(u.rule).name] = u.reason;
  return out;
}

// ev (partitioned, OID 10) -> ev_eu (partitioned, 11) -> ev_eu_1 (12); ev -> ev_us (13).
std::vector<CatalogTable> leaves_published() {
  return {table(10, "ev", 'p', {}, false), table(11, "ev_eu", 'p', {10}, false),
          table(12, "ev_eu_1", 'r', {11, 10}), table(13, "ev_us", 'r', {10}), table(20, "post")};
}

TEST(RuleBinding, PartitionsPublishedAsLeavesMatchTheRulesOfEveryAncestor) {
  const RuleSet rules = load_ok(kRules);
  RuleBinding b(rules);
  EXPECT_TRUE(b.update(snapshot(leaves_published())).empty());
  EXPECT_TRUE(b.unbound().empty()) << unbound(b, rules).begin()->second;
  EXPECT_EQ(keys(b, rules, change_on(12, "ev_eu_1")),
            (std::vector<std::string>{"eu_7", "ev_7", "region_eu"}));
  EXPECT_EQ(keys(b, rules, change_on(13, "ev_us", "8", "us")),
            (std::vector<std::string>{"ev_8", "region_us"}));
}

TEST(RuleBinding, PartitionsPublishedViaTheRootMatchTheRootsRules) {
  const RuleSet rules = load_ok(R"(version: 1
rules:
  - {name: ev-pages, table: ev, delete: ["ev_{id}"]}
)");
  RuleBinding b(rules);
  auto tables = leaves_published();
  for (auto& t : tables) t.published = t.name == "ev" || t.name == "post";
  (void)b.update(snapshot(tables, true));
  EXPECT_TRUE(b.unbound().empty());
  EXPECT_EQ(keys(b, rules, change_on(10, "ev")), (std::vector<std::string>{"ev_7"}));
}

TEST(RuleBinding, ALeafRuleUnderAPublishedRootIsUnboundWithTheReason) {
  const RuleSet rules = load_ok(kRules);
  RuleBinding b(rules);
  auto tables = leaves_published();
  for (auto& t : tables) t.published = t.name == "ev" || t.name == "post";
  (void)b.update(snapshot(tables, true));
  const auto u = unbound(b, rules);
  ASSERT_EQ(u.size(), 1U);
  EXPECT_NE(u.at("eu-only").find("under its partition root public.ev"), std::string::npos);
}

TEST(RuleBinding, APartitionedMemberWithoutPartitionsIsBound) {
  const RuleSet rules = load_ok(R"(version: 1
rules:
  - {name: ev-pages, table: ev, delete: ["ev_{id}"]}
)");
  RuleBinding b(rules);
  auto ev = table(10, "ev", 'p', {}, false);
  ev.member = true;
  (void)b.update(snapshot({ev}));
  EXPECT_TRUE(b.unbound().empty());
}

TEST(RuleBinding, ARenameKeepsMatchingAndIsReportedOnce) {
  const RuleSet rules = load_ok(kRules);
  RuleBinding b(rules);
  (void)b.update(snapshot(leaves_published()));
  auto tables = leaves_published();
  tables.back().name = "post_renamed";
  // The next snapshot finds the table by its OID (the name lookup finds nothing).
  const auto changes = b.update(snapshot(tables));
  ASSERT_EQ(changes.size(), 1U);
  EXPECT_EQ(changes[0].kind, SchemaChange::Kind::Rename);
  EXPECT_EQ(changes[0].old_name, "public.post");
  EXPECT_EQ(changes[0].new_name, "public.post_renamed");
  EXPECT_EQ(changes[0].rules, std::vector<std::string>{"post-pages"});
  EXPECT_TRUE(b.update(snapshot(tables)).empty());
  EXPECT_TRUE(b.unbound().empty());
  EXPECT_EQ(keys(b, rules, change_on(20, "post_renamed")), std::vector<std::string>{"post_7"});
}

TEST(RuleBinding, ARelationMessageWithANewNameAsksForTheCatalog) {
  const RuleSet rules = load_ok(kRules);
  RuleBinding b(rules);
  (void)b.update(snapshot(leaves_published()));
  bool needs = false;
  (void)b.observe(*change_on(20, "post").relation, &needs);
  EXPECT_FALSE(needs);
  (void)b.observe(*change_on(20, "post_renamed").relation, &needs);
  EXPECT_TRUE(needs);
  (void)b.observe(*change_on(99, "brand_new").relation, &needs);
  EXPECT_TRUE(needs);
}

TEST(RuleBinding, ARecreatedTableIsBoundAnewAndTheOldOidKeepsRouting) {
  const RuleSet rules = load_ok(kRules);
  RuleBinding b(rules);
  (void)b.update(snapshot(leaves_published()));
  auto tables = leaves_published();
  tables.pop_back();
  (void)b.update(snapshot(tables));
  EXPECT_EQ(unbound(b, rules).at("post-pages"), "table public.post does not exist");
  tables.push_back(table(30, "post"));
  const auto changes = b.update(snapshot(tables));
  ASSERT_EQ(changes.size(), 1U);
  EXPECT_EQ(changes[0].kind, SchemaChange::Kind::Recreate);
  EXPECT_EQ(changes[0].old_oid, 20U);
  EXPECT_EQ(changes[0].new_oid, 30U);
  EXPECT_TRUE(b.unbound().empty());
  EXPECT_EQ(keys(b, rules, change_on(30, "post")), std::vector<std::string>{"post_7"});
  // Changes of the dropped table still in the stream belonged to the rule's table.
  EXPECT_EQ(keys(b, rules, change_on(20, "post")), std::vector<std::string>{"post_7"});
}

TEST(RuleBinding, MissingOrUnpublishedTablesAndAMissingPublicationAreReasons) {
  const RuleSet rules = load_ok(kRules);
  RuleBinding b(rules);
  auto tables = leaves_published();
  tables.back().published = false;
  tables.erase(tables.begin() + 1);  // ev_eu gone
  (void)b.update(snapshot(tables));
  auto u = unbound(b, rules);
  EXPECT_EQ(u.at("post-pages"), "table public.post is not in publication walbust");
  EXPECT_EQ(u.at("eu-only"), "table public.ev_eu does not exist");
  EXPECT_FALSE(u.contains("ev-pages"));
  auto s = snapshot(leaves_published());
  s.publication_exists = false;
  (void)b.update(s);
  EXPECT_EQ(unbound(b, rules).at("post-pages"), "publication walbust does not exist");
}

TEST(RuleBinding, AColumnGoneFromTheStreamUnbindsOnlyTheRulesThatNameIt) {
  const RuleSet rules = load_ok(kRules);
  RuleBinding b(rules);
  (void)b.update(snapshot(leaves_published()));
  Relation leaf = *change_on(13, "ev_us").relation;
  leaf.columns.erase(leaf.columns.begin() + 1);  // region dropped
  bool needs = true;
  (void)b.observe(leaf, &needs);
  EXPECT_FALSE(needs);
  const auto u = unbound(b, rules);
  ASSERT_EQ(u.size(), 1U);
  EXPECT_EQ(u.at("ev-pages"),
            "column region of table public.ev does not exist (dropped or renamed)");
  // Back once a Relation message (or the catalog) has it again.
  (void)b.observe(*change_on(13, "ev_us").relation, &needs);
  EXPECT_TRUE(b.unbound().empty());
}

TEST(RuleBinding, AnUnknownOidFallsBackToTheRelationsName) {
  const RuleSet rules = load_ok(kRules);
  RuleBinding b(rules);
  EXPECT_EQ(keys(b, rules, change_on(5, "post")), std::vector<std::string>{"post_7"});
  EXPECT_EQ(unbound(b, rules).size(), 3U);
}

TEST(RuleBinding, ARebindKeepsTheOidsOfTablesItStillHasRulesFor) {
  const RuleSet rules = load_ok(kRules);
  RuleBinding b(rules);
  (void)b.update(snapshot(leaves_published()));
  auto tables = leaves_published();
  tables.back().name = "post_renamed";
  (void)b.update(snapshot(tables));
  const RuleSet reloaded = load_ok(R"(version: 1
rules:
  - {name: post-pages, table: post, delete: ["p_{id}"]}
)");
  b.rebind(reloaded);
  EXPECT_TRUE(b.update(snapshot(tables)).empty());
  EXPECT_TRUE(b.unbound().empty());
  EXPECT_EQ(keys(b, reloaded, change_on(20, "post_renamed")), std::vector<std::string>{"p_7"});
}

}  // namespace
}  // namespace walbust

namespace walbust {
namespace {

// A FOR ALL TABLES publication lists every table: binding stays linear in the catalog.
TEST(RuleBinding, ALargeCatalogRoutesEveryPartition) {
  const RuleSet rules = load_ok(kRules);
  RuleBinding b(rules);
  std::vector<CatalogTable> tables = leaves_published();
  for (std::uint32_t i = 0; i < 50000; ++i) {
    tables.push_back(table(100000 + i, "part_" + std::to_string(i), 'r', {10}));
  }
  (void)b.update(snapshot(std::move(tables)));
  EXPECT_TRUE(b.unbound().empty());
  EXPECT_EQ(keys(b, rules, change_on(149999, "part_49999", "3", "us")),
            (std::vector<std::string>{"ev_3", "region_us"}));
}

}  // namespace
}  // namespace walbust

namespace walbust {
namespace {

TEST(RuleBinding, ATruncateNamingEveryPartitionScansEachRulesPatternsOnce) {
  const RuleSet rules = load_ok(kRules);
  RuleBinding b(rules);
  (void)b.update(snapshot(leaves_published()));
  const auto truncate = [](std::uint32_t oid, std::string name, Lsn lsn) {
    Change c = change_on(oid, std::move(name));
    c.op = Op::Truncate;
    c.new_row.reset();
    c.lsn = lsn;
    return c;
  };
  std::vector<Action> out;
  b.plan(rules, truncate(12, "ev_eu_1", 100), out);
  const std::size_t first = out.size();
  b.plan(rules, truncate(13, "ev_us", 100), out);
  // ev_us adds nothing new for ev's rules; ev_eu_1 also had eu-only's.
  EXPECT_EQ(out.size(), first);
  b.plan(rules, truncate(13, "ev_us", 200), out);  // another TRUNCATE: planned again
  EXPECT_GT(out.size(), first);
}

}  // namespace
}  // namespace walbust
