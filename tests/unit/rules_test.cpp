#include "walbust/core/rules.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "support/rules_text.h"
#include "walbust/core/django_keys.h"

namespace walbust {
namespace {

using testing::load_errors;
using testing::load_ok;
using testing::T;

const Value N{Value::Kind::Null, {}};
const Value U{Value::Kind::Unchanged, {}};
const Value A{Value::Kind::Absent, {}};

const std::vector<std::string> kPostColumns = {"id",          "title",      "slug",
                                               "content",     "author_id",  "category_id",
                                               "is_featured", "view_count", "status"};

// A change on a table; rows are given as column → value, the rest of the row is Absent.
struct ChangeBuilder {
  std::shared_ptr<Relation> rel = std::make_shared<Relation>();
  Change change;

  explicit ChangeBuilder(Op op, std::string table = "blog_post",
                         const std::vector<std::string>& columns = kPostColumns,
                         std::string schema = "public") {
    rel->schema = std::move(schema);
    rel->name = std::move(table);
    rel->replica_identity = 'f';
    for (const auto& c : columns) rel->columns.push_back(Column{c, 25});
    change.op = op;
    change.relation = rel;
    change.commit_lsn = 0x16B3748;
  }
  Row row(const std::map<std::string, Value>& values) const {
    Row r(rel->columns.size(), A);
    for (const auto& [col, v] : values) {
      const int i = rel->column_index(col);
      EXPECT_GE(i, 0) << col;
      if (i >= 0) r[static_cast<std::size_t>(i)] = v;
    }
    return r;
  }
  ChangeBuilder& old_row(const std::map<std::string, Value>& values) {
    change.old_row = row(values);
    return *this;
  }
  ChangeBuilder& new_row(const std::map<std::string, Value>& values) {
    change.new_row = row(values);
    return *this;
  }
};

// Actions as sorted "kind key" strings (with "=value" for bump_version).
std::vector<std::string> plan(const RuleSet& rules, const Change& change,
                              std::vector<RenderFailure>* failures = nullptr) {
  std::vector<Action> actions;
  rules.plan(change, actions, failures);
  std::vector<std::string> out;
  for (const auto& a : actions) {
    std::string s = std::string(action_name(a.kind)) + " " + a.key;
    if (!a.value.empty()) s += "=" + a.value;
    out.push_back(s);
  }
  std::sort(out.begin(), out.end());
  return out;
}

using Keys = std::vector<std::string>;

std::vector<std::string> failure_text(const std::vector<RenderFailure>& failures) {
  std::vector<std::string> out;
  for (const auto& f : failures) {
    out.push_back(std::to_string(f.rule) + ":" + f.reason + ":" + f.column);
  }
  return out;
}

const std::string kBlogRule = R"(version: 1
rules:
  - name: post-pages
    table: blog_post
    ignore_changes: [view_count]
    delete:
      - "post_detail_{id}"
      - "home_page_posts"
      - "category_posts_{category_id}"
      - "author_posts_{author_id}"
)";

// ---------------------------------------------------------------------------------------
// Matching and rendering

TEST(RulesPlan, UpdateRendersOldAndNewRow) {
  const RuleSet rules = load_ok(kBlogRule);
  ChangeBuilder b(Op::Update);
  b.old_row(
       {{"id", T("7")}, {"category_id", T("3")}, {"author_id", T("1")}, {"view_count", T("10")}})
      .new_row({{"id", T("7")},
                {"category_id", T("4")},
                {"author_id", T("1")},
                {"view_count", T("10")}});
  EXPECT_EQ(plan(rules, b.change),
            (Keys{"delete author_posts_1", "delete category_posts_3", "delete category_posts_4",
                  "delete home_page_posts", "delete post_detail_7"}));
}

TEST(RulesPlan, InsertRendersNewRowDeleteRendersOldRow) {
  const RuleSet rules = load_ok(kBlogRule);
  ChangeBuilder insert(Op::Insert);
  insert.new_row({{"id", T("8")}, {"category_id", T("2")}, {"author_id", T("5")}});
  EXPECT_EQ(plan(rules, insert.change), (Keys{"delete author_posts_5", "delete category_posts_2",
                                              "delete home_page_posts", "delete post_detail_8"}));
  ChangeBuilder del(Op::Delete);
  del.old_row({{"id", T("9")}, {"category_id", T("1")}, {"author_id", T("2")}});
  EXPECT_EQ(plan(rules, del.change), (Keys{"delete author_posts_2", "delete category_posts_1",
                                           "delete home_page_posts", "delete post_detail_9"}));
}

TEST(RulesPlan, IdenticalKeysAreProducedOnce) {
  const RuleSet rules = load_ok(kBlogRule + R"(  - name: again
    table: blog_post
    delete: ["post_detail_{id}", "post_detail_{new.id}"]
    redelete_after: 2s
)");
  ChangeBuilder b(Op::Update);
  b.old_row({{"id", T("7")}, {"category_id", T("3")}, {"author_id", T("1")}, {"title", T("a")}})
      .new_row({{"id", T("7")}, {"category_id", T("3")}, {"author_id", T("1")}, {"title", T("b")}});
  std::vector<Action> actions;
  rules.plan(b.change, actions);
  ASSERT_EQ(actions.size(), 4u);
  EXPECT_EQ(actions[0].key, "post_detail_7");
  EXPECT_EQ(actions[0].rule, 0u);                  // the first rule that produced it
  EXPECT_EQ(actions[0].redelete_after_ms, 2000u);  // the longest redelete asked for
  // Appends: what the caller already had is left alone and not deduplicated against.
  rules.plan(b.change, actions);
  EXPECT_EQ(actions.size(), 8u);
}

TEST(RulesPlan, AfterReplayIsOnByDefaultAndARuleOrItsFileMayOptOut) {
  const RuleSet rules = load_ok(R"(version: 1
defaults:
  after_replay: false
rules:
  - name: quiet
    table: blog_post
    delete: ["post_detail_{id}", "only_quiet"]
  - name: loud
    table: blog_post
    after_replay: true
    delete: ["post_detail_{id}"]
)");
  ChangeBuilder insert(Op::Insert);
  insert.new_row({{"id", T("8")}});
  std::vector<Action> actions;
  rules.plan(insert.change, actions);
  ASSERT_EQ(actions.size(), 2u);
  EXPECT_EQ(actions[0].key, "post_detail_8");
  EXPECT_TRUE(actions[0].after_replay);  // a key two rules produce is repeated when either asks
  EXPECT_EQ(actions[1].key, "only_quiet");
  EXPECT_FALSE(actions[1].after_replay);
  const RuleSet plain = load_ok(kBlogRule);
  actions.clear();
  plain.plan(insert.change, actions);
  EXPECT_TRUE(
      std::all_of(actions.begin(), actions.end(), [](const Action& a) { return a.after_replay; }));
}

TEST(RulesLoad, AfterReplayMustBeABoolean) {
  Diagnostics diags;
  (void)RuleSet::load({{"r.yaml",
                        "version: 1\nrules:\n  - name: r\n    table: t\n    after_replay: later\n"
                        "    delete: [k]\n"}},
                      diags);
  ASSERT_EQ(diags.size(), 1u);
  EXPECT_NE(diags.format().find("r.yaml:5:19: error: 'after_replay' must be true or false"),
            std::string::npos)
      << diags.format();
}

struct UpdateFilterCase {
  std::string name;
  std::string filter;  // YAML line(s) for the rule
  std::optional<std::map<std::string, Value>> old_row;
  std::map<std::string, Value> new_row;
  bool matches;
};

// A full old row (REPLICA IDENTITY FULL) of the table the filter cases run against.
const std::vector<std::string> kFilterColumns = {"id",     "title",       "slug",
                                                 "status", "is_featured", "view_count"};
const std::map<std::string, Value> kRow = {{"id", T("7")},          {"title", T("t")},
                                           {"slug", T("s")},        {"status", T("draft")},
                                           {"is_featured", T("f")}, {"view_count", T("1")}};
class RulesUpdateFilter : public ::testing::TestWithParam<UpdateFilterCase> {};

TEST_P(RulesUpdateFilter, Matches) {
  const auto& c = GetParam();
  const RuleSet rules = load_ok("version: 1\nrules:\n  - name: r\n    table: blog_post\n    " +
                                c.filter + "\n    delete: [\"k_{id}\"]\n");
  ChangeBuilder b(Op::Update, "blog_post", kFilterColumns);
  if (c.old_row) b.old_row(*c.old_row);
  b.new_row(c.new_row);
  EXPECT_EQ(!plan(rules, b.change).empty(), c.matches) << c.name;
}

std::map<std::string, Value> with(std::map<std::string, Value> row, const std::string& col,
                                  Value v) {
  row[col] = std::move(v);
  return row;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RulesUpdateFilter,
    ::testing::Values(
        UpdateFilterCase{"ignored column only", "ignore_changes: [view_count]", kRow,
                         with(kRow, "view_count", T("2")), false},
        UpdateFilterCase{"ignored and other column", "ignore_changes: [view_count]", kRow,
                         with(with(kRow, "view_count", T("2")), "title", T("u")), true},
        UpdateFilterCase{"nothing changed", "ignore_changes: [view_count]", kRow, kRow, false},
        UpdateFilterCase{"null to value", "ignore_changes: [view_count]", with(kRow, "title", N),
                         kRow, true},
        UpdateFilterCase{"ignore: old row missing", "ignore_changes: [view_count]", std::nullopt,
                         kRow, true},
        UpdateFilterCase{"ignore: old value absent", "ignore_changes: [view_count]",
                         with(kRow, "title", A), kRow, true},
        UpdateFilterCase{"ignore: unchanged toast", "ignore_changes: [view_count]", kRow,
                         with(with(kRow, "title", U), "view_count", T("5")), false},
        UpdateFilterCase{"changed listed", "changed: [title, slug]", kRow,
                         with(kRow, "title", T("u")), true},
        UpdateFilterCase{"changed other", "changed: [title, slug]", kRow,
                         with(kRow, "status", T("x")), false},
        UpdateFilterCase{"changed: old row missing", "changed: [title]", std::nullopt, kRow, true},
        UpdateFilterCase{"changed: old value absent", "changed: [title]", with(kRow, "title", A),
                         kRow, true},
        UpdateFilterCase{"changed: unchanged toast", "changed: [title]", kRow,
                         with(kRow, "title", U), false},
        UpdateFilterCase{"changed: column not in relation", "changed: [gone]", kRow, kRow, true},
        UpdateFilterCase{"when: new row has it", "when: {status: published}", kRow,
                         with(kRow, "status", T("published")), true},
        UpdateFilterCase{"when: old row had it", "when: {status: published}",
                         with(kRow, "status", T("published")), kRow, true},
        UpdateFilterCase{"when: neither", "when: {status: published}", kRow, kRow, false},
        UpdateFilterCase{"when: old row missing", "when: {status: published}", std::nullopt, kRow,
                         true},
        UpdateFilterCase{"when: all values of one row", "when: {status: published, title: t}",
                         with(kRow, "title", T("x")), with(kRow, "status", T("published")), true},
        UpdateFilterCase{"when: values split over rows", "when: {status: published, title: x}",
                         with(kRow, "title", T("x")), with(kRow, "status", T("published")), false},
        UpdateFilterCase{"when: null", "when: {title: null}", kRow, with(kRow, "title", N), true},
        UpdateFilterCase{"when: null not text", "when: {title: null}", kRow, kRow, false},
        UpdateFilterCase{"when: boolean", "when: {is_featured: true}", kRow,
                         with(kRow, "is_featured", T("t")), true},
        UpdateFilterCase{"when: number as written", "when: {view_count: 1}", kRow,
                         with(kRow, "view_count", T("2")), true},
        UpdateFilterCase{"when: toast from old", "when: {title: t}", with(kRow, "status", T("a")),
                         with(with(kRow, "title", U), "status", T("b")), true}));

TEST(RulesPlan, WhenOnInsertAndDeleteLooksAtTheirOnlyRow) {
  const RuleSet rules = load_ok(R"(version: 1
rules:
  - name: r
    table: blog_post
    when: {status: published}
    delete: ["k_{id}"]
)");
  ChangeBuilder ins(Op::Insert);
  ins.new_row({{"id", T("1")}, {"status", T("draft")}});
  EXPECT_TRUE(plan(rules, ins.change).empty());
  ins.new_row({{"id", T("1")}, {"status", T("published")}});
  EXPECT_EQ(plan(rules, ins.change), Keys{"delete k_1"});
  ChangeBuilder del(Op::Delete);
  del.old_row({{"id", T("1")}, {"status", T("draft")}});
  EXPECT_TRUE(plan(rules, del.change).empty());
  del.old_row({{"id", T("1")}, {"status", A}});  // identity key only: cannot tell
  EXPECT_EQ(plan(rules, del.change), Keys{"delete k_1"});
}

TEST(RulesPlan, OperationsAndTablesMustMatch) {
  const RuleSet rules = load_ok(R"(version: 1
rules:
  - name: r
    table: app.posts
    on: [delete]
    delete: ["k_{id}"]
)");
  ChangeBuilder del(Op::Delete, "posts", {"id"}, "app");
  del.old_row({{"id", T("1")}});
  EXPECT_EQ(plan(rules, del.change), Keys{"delete k_1"});
  ChangeBuilder ins(Op::Insert, "posts", {"id"}, "app");
  ins.new_row({{"id", T("1")}});
  EXPECT_TRUE(plan(rules, ins.change).empty());
  ChangeBuilder other(Op::Delete, "posts", {"id"}, "public");
  other.old_row({{"id", T("1")}});
  EXPECT_TRUE(plan(rules, other.change).empty());
  EXPECT_TRUE(rules.watches("app", "posts"));
  EXPECT_FALSE(rules.watches("public", "posts"));
  Change no_relation;
  std::vector<Action> actions;
  rules.plan(no_relation, actions);
  EXPECT_TRUE(actions.empty());
}

TEST(RulesPlan, NullSkipsAndIsReported) {
  const RuleSet rules = load_ok(kBlogRule);
  ChangeBuilder b(Op::Insert);
  b.new_row({{"id", T("9")}, {"category_id", N}, {"author_id", T("1")}});
  std::vector<RenderFailure> failures;
  EXPECT_EQ(plan(rules, b.change, &failures),
            (Keys{"delete author_posts_1", "delete home_page_posts", "delete post_detail_9"}));
  EXPECT_EQ(failure_text(failures), Keys{"0:null:category_id"});
}

TEST(RulesPlan, NullLiteralFromDefaultsAndRuleOverride) {
  const RuleSet rules = load_ok(R"(version: 1
defaults:
  null: None
rules:
  - name: a
    table: blog_post
    delete: ["a_{category_id}"]
  - name: b
    table: blog_post
    null: skip
    delete: ["b_{category_id}", "c_{category_id|python}"]
  - name: c
    table: blog_post
    null: ""
    delete: ["d_{category_id}"]
)");
  ChangeBuilder b(Op::Insert);
  b.new_row({{"id", T("9")}, {"category_id", N}});
  EXPECT_EQ(plan(rules, b.change), (Keys{"delete a_None", "delete c_None", "delete d_"}));
}

TEST(RulesPlan, UnchangedToastComesFromTheOldRow) {
  const RuleSet rules = load_ok(R"(version: 1
rules:
  - name: r
    table: blog_post
    delete: ["slug_{slug}"]
)");
  ChangeBuilder b(Op::Update);
  b.old_row({{"id", T("1")}, {"slug", T("long")}}).new_row({{"id", T("1")}, {"slug", U}});
  EXPECT_EQ(plan(rules, b.change), Keys{"delete slug_long"});
  ChangeBuilder no_old(Op::Update);
  no_old.new_row({{"id", T("1")}, {"slug", U}});
  std::vector<RenderFailure> failures;
  EXPECT_TRUE(plan(rules, no_old.change, &failures).empty());
  EXPECT_EQ(failure_text(failures), Keys{"0:unchanged_toast:slug"});
}

TEST(RulesPlan, AbsentOldValuesAreReportedNewRowStillRenders) {
  const RuleSet rules = load_ok(kBlogRule);
  ChangeBuilder b(Op::Update);  // a 'K' old tuple: the key changed, other columns not sent
  b.old_row({{"id", T("7")}})
      .new_row({{"id", T("8")}, {"category_id", T("3")}, {"author_id", T("1")}});
  std::vector<RenderFailure> failures;
  EXPECT_EQ(plan(rules, b.change, &failures),
            (Keys{"delete author_posts_1", "delete category_posts_3", "delete home_page_posts",
                  "delete post_detail_7", "delete post_detail_8"}));
  EXPECT_EQ(failure_text(failures),
            (Keys{"0:old_row_unavailable:category_id", "0:old_row_unavailable:author_id"}));
}

TEST(RulesPlan, MissingOldRow) {
  const RuleSet rules = load_ok(R"(version: 1
rules:
  - name: r
    table: blog_post
    delete: ["plain_{slug}", "old_{old.slug}"]
)");
  // An update without old row: plain templates render the new row only, {old.x} fails.
  ChangeBuilder upd(Op::Update);
  upd.new_row({{"slug", T("s")}});
  std::vector<RenderFailure> failures;
  EXPECT_EQ(plan(rules, upd.change, &failures), Keys{"delete plain_s"});
  EXPECT_EQ(failure_text(failures), Keys{"0:old_row_unavailable:slug"});
  // An insert never has one: {old.x} quietly does not render.
  failures.clear();
  ChangeBuilder ins(Op::Insert);
  ins.new_row({{"slug", T("s")}});
  EXPECT_EQ(plan(rules, ins.change, &failures), Keys{"delete plain_s"});
  EXPECT_TRUE(failures.empty());
  // A delete without old row cannot render anything.
  ChangeBuilder del(Op::Delete);
  EXPECT_TRUE(plan(rules, del.change, &failures).empty());
  EXPECT_EQ(failure_text(failures),
            (Keys{"0:old_row_unavailable:slug", "0:old_row_unavailable:slug"}));
}

TEST(RulesPlan, PinnedImagesRenderOnce) {
  const RuleSet rules = load_ok(R"(version: 1
rules:
  - name: r
    table: blog_post
    on: [insert, update, delete]
    delete: ["move_{old.category_id}_{new.category_id}", "was_{old.slug}", "now_{new.slug}"]
)");
  ChangeBuilder b(Op::Update);
  b.old_row({{"category_id", T("3")}, {"slug", T("a")}})
      .new_row({{"category_id", T("4")}, {"slug", T("b")}});
  EXPECT_EQ(plan(rules, b.change), (Keys{"delete move_3_4", "delete now_b", "delete was_a"}));
  ChangeBuilder del(Op::Delete);
  del.old_row({{"category_id", T("3")}, {"slug", T("a")}});
  EXPECT_EQ(plan(rules, del.change), Keys{"delete was_a"});
}

TEST(RulesPlan, UnknownColumnIsReported) {
  const RuleSet rules = load_ok(R"(version: 1
rules:
  - name: r
    table: blog_post
    delete: ["k_{renamed}", "ok_{id}"]
)");
  ChangeBuilder b(Op::Insert);
  b.new_row({{"id", T("1")}});
  std::vector<RenderFailure> failures;
  EXPECT_EQ(plan(rules, b.change, &failures), Keys{"delete ok_1"});
  EXPECT_EQ(failure_text(failures), Keys{"0:unknown_column:renamed"});
}

TEST(RulesPlan, PatternsEscapeValuesNotTemplateText) {
  const RuleSet rules = load_ok(R"(version: 1
rules:
  - name: r
    table: blog_post
    delete_pattern: ["user:{author_id}:*", "t:[ab]?{slug}"]
    delete: ["exact:{slug}"]
)");
  ChangeBuilder b(Op::Insert);
  b.new_row({{"author_id", T("1*")}, {"slug", T("a?[b]\\c")}});
  EXPECT_EQ(plan(rules, b.change),
            (Keys{"delete exact:a?[b]\\c", "delete_pattern t:[ab]?a\\?\\[b\\]\\\\c",
                  "delete_pattern user:1\\*:*"}));
}

TEST(RulesPlan, BumpVersionSetsTheCommitLsn) {
  const RuleSet rules = load_ok(R"(version: 1
rules:
  - name: r
    table: blog_post
    bump_version: ["article_version_{id}", "all_articles_version"]
    redelete_after: 500ms
)");
  ChangeBuilder b(Op::Insert);
  b.new_row({{"id", T("7")}});
  std::vector<Action> actions;
  rules.plan(b.change, actions);
  ASSERT_EQ(actions.size(), 2u);
  EXPECT_EQ(actions[0], (Action{ActionKind::BumpVersion, 0, "article_version_7", "23803720", 500}));
  EXPECT_EQ(actions[1].key, "all_articles_version");
  EXPECT_EQ(actions[1].value, "23803720");
}

TEST(RulesPlan, DjangoKeyFormat) {
  const RuleSet rules = load_ok(R"(version: 1
defaults:
  key_format: django
  django: {key_prefix: "s*te", version: 3}
rules:
  - name: d
    table: blog_post
    delete: ["post_{id}"]
    delete_pattern: ["list_{author_id}_*"]
    bump_version: ["v_{id}"]
    fragment:
      - {name: sidebar, vary_on: ["{author_id}"]}
      - {name: footer}
  - name: plain
    table: blog_post
    key_format: plain
    delete: ["raw_{id}"]
    fragment:
      - {name: sidebar, vary_on: ["{author_id}"]}
  - name: default-django
    table: blog_post
    django: {key_prefix: ""}
    delete: ["x_{id}"]
)");
  ChangeBuilder b(Op::Insert);
  b.new_row({{"id", T("7")}, {"author_id", T("5")}});
  const std::string sidebar = django_fragment_key("sidebar", {"5"});
  EXPECT_EQ(
      plan(rules, b.change),
      (Keys{"bump_version s*te:3:v_7=23803720", "delete :3:x_7", "delete raw_7",
            "delete s*te:3:post_7",
            "delete s*te:3:template.cache.footer.d41d8cd98f00b204e9800998ecf8427e",
            "delete s*te:3:" + sidebar, "delete " + sidebar, "delete_pattern s\\*te:3:list_5_*"}));
}

TEST(RulesPlan, FragmentsRenderEachImage) {
  const RuleSet rules = load_ok(R"(version: 1
rules:
  - name: f
    table: blog_post
    fragment:
      - {name: card, vary_on: ["{id}", "{is_featured|python}"]}
)");
  ChangeBuilder b(Op::Update);
  b.old_row({{"id", T("7")}, {"is_featured", T("f")}})
      .new_row({{"id", T("7")}, {"is_featured", T("t")}});
  // The relation types columns as text (25): python leaves t/f alone there.
  EXPECT_EQ(plan(rules, b.change), (Keys{"delete " + django_fragment_key("card", {"7", "f"}),
                                         "delete " + django_fragment_key("card", {"7", "t"})}));
  b.rel->columns[6].type_oid = 16;  // bool
  EXPECT_EQ(plan(rules, b.change), (Keys{"delete " + django_fragment_key("card", {"7", "False"}),
                                         "delete " + django_fragment_key("card", {"7", "True"})}));
  std::vector<RenderFailure> failures;
  b.new_row({{"id", T("7")}, {"is_featured", A}});
  b.old_row({{"id", T("7")}, {"is_featured", A}});
  EXPECT_TRUE(plan(rules, b.change, &failures).empty());
  EXPECT_EQ(failure_text(failures),
            (Keys{"0:unchanged_toast:is_featured", "0:old_row_unavailable:is_featured"}));
}

const std::string kTruncateRules = R"(version: 1
rules:
  - name: t
    table: blog_post
    delete: ["post_{id}", "home", "lit*[x]_{slug}"]
    delete_pattern: ["user:{author_id}:*", "all:*"]
    bump_version: ["v_{id}", "global_v"]
    fragment:
      - {name: side*bar, vary_on: ["{author_id}"]}
      - {name: footer}
      - {name: fixed, vary_on: ["a", "b"]}
  - name: d
    table: blog_post
    key_format: django
    django: {key_prefix: "p?"}
    on: [truncate]
    delete: ["post_{id}", "home"]
  - name: no-truncate
    table: blog_post
    on: [insert]
    delete: ["never_{id}"]
)";

TEST(RulesPlan, TruncateTurnsPlaceholdersIntoPatterns) {
  const RuleSet rules = load_ok(kTruncateRules);
  ChangeBuilder b(Op::Truncate);
  EXPECT_EQ(
      plan(rules, b.change),
      (Keys{"bump_version global_v=23803720", "delete home", "delete p?:1:home",
            "delete " + django_fragment_key("fixed", {"a", "b"}),
            "delete template.cache.footer.d41d8cd98f00b204e9800998ecf8427e", "delete_pattern all:*",
            "delete_pattern lit\\*\\[x\\]_*", "delete_pattern p\\?:1:post_*",
            "delete_pattern post_*", "delete_pattern template.cache.side\\*bar.*",
            "delete_pattern user:*:*", "delete_pattern v_*"}));
}

TEST(RulesSet, AllKeysAsPatternsCoversEveryRule) {
  const RuleSet rules = load_ok(kTruncateRules);
  const auto actions = rules.all_keys_as_patterns();
  std::vector<std::string> keys;
  for (const auto& a : actions) {
    EXPECT_TRUE(a.value.empty());
    keys.push_back(std::string(action_name(a.kind)) + " " + a.key + " " + std::to_string(a.rule));
  }
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (Keys{"bump_version global_v 0", "delete home 0", "delete p?:1:home 1",
                        "delete " + django_fragment_key("fixed", {"a", "b"}) + " 0",
                        "delete template.cache.footer.d41d8cd98f00b204e9800998ecf8427e 0",
                        "delete_pattern all:* 0", "delete_pattern lit\\*\\[x\\]_* 0",
                        "delete_pattern never_* 2", "delete_pattern p\\?:1:post_* 1",
                        "delete_pattern post_* 0", "delete_pattern template.cache.side\\*bar.* 0",
                        "delete_pattern user:*:* 0", "delete_pattern v_* 0"}));
}

TEST(RulesSet, InfoNeedsAndTargets) {
  Diagnostics diags;
  const RuleSet rules = RuleSet::load({{"a.yaml", kBlogRule}, {"b.yaml", R"(version: 1
rules:
  - name: comments
    table: shop.comment
    on: [insert]
    targets: [sessions, pages]
    delete: ["c_{post_id}"]
  - name: moves
    table: blog_post
    on: [update]
    when: {status: published}
    delete: ["m_{old.category_id}"]
)"}},
                                      diags);
  ASSERT_TRUE(diags.empty()) << diags.format();
  ASSERT_EQ(rules.size(), 3u);
  EXPECT_EQ(rules.rule(0).name, "post-pages");
  EXPECT_EQ(rules.rule(0).file, "a.yaml");
  EXPECT_EQ(rules.rule(0).line, 3);
  EXPECT_EQ(rules.rule(1).schema, "shop");
  EXPECT_EQ(rules.rule(1).table, "comment");
  EXPECT_EQ(rules.rule(1).targets, (std::vector<std::string>{"sessions", "pages"}));
  EXPECT_TRUE(rules.rule(0).targets.empty());

  const auto needs = rules.table_needs();
  ASSERT_EQ(needs.size(), 2u);
  EXPECT_EQ(needs[0].name, "blog_post");
  EXPECT_TRUE(needs[0].needs_old_row);
  EXPECT_EQ(needs[0].columns,
            (std::set<std::string>{"author_id", "category_id", "id", "status", "view_count"}));
  EXPECT_EQ(needs[0].old_value_columns, (std::set<std::string>{"author_id", "category_id", "id"}));
  EXPECT_EQ(needs[0].ops, (std::set<Op>{Op::Insert, Op::Update, Op::Delete, Op::Truncate}));
  EXPECT_EQ(needs[1].schema, "shop");
  EXPECT_FALSE(needs[1].needs_old_row);
  EXPECT_TRUE(needs[1].old_value_columns.empty());
  EXPECT_EQ(needs[1].ops, std::set<Op>{Op::Insert});
}

TEST(RulesPlan, NeverThrowsOnAnyRowContent) {
  const RuleSet rules = load_ok(R"(version: 1
defaults: {key_format: django}
rules:
  - name: everything
    table: blog_post
    ignore_changes: [view_count]
    when: {status: null}
    delete: ["a_{id}_{title|upper}_{content|md5}", "b_{old.slug|python}_{new.slug|lower}"]
    delete_pattern: ["p:{title}:*"]
    bump_version: ["v_{author_id}"]
    fragment: [{name: f, vary_on: ["{category_id}", "{is_featured|python}"]}]
  - name: unmatched-when
    table: blog_post
    when: {status: x}
    delete: ["{status}"]
)");
  std::mt19937 rng(42);
  const std::vector<std::string> samples = {"",
                                            "7",
                                            "t",
                                            "f",
                                            "line\nbreak",
                                            "\"quoted\" 'x'",
                                            "*?[]\\",
                                            "\xc3\xa9\xe2\x98\x95",
                                            std::string(1 << 20, 'x'),
                                            std::string("nul\0byte", 8),
                                            "{id}",
                                            "}{"};
  const auto random_value = [&] {
    switch (rng() % 5) {
      case 0:
        return N;
      case 1:
        return U;
      case 2:
        return A;
      default:
        return T(samples[rng() % samples.size()]);
    }
  };
  for (int i = 0; i < 600; ++i) {
    ChangeBuilder b(static_cast<Op>(rng() % 4));
    const auto random_row = [&] {
      Row row(b.rel->columns.size());
      for (auto& v : row) v = random_value();
      if (rng() % 8 == 0) row.resize(rng() % row.size());  // malformed: too short
      return row;
    };
    if (rng() % 4 != 0) b.change.old_row = random_row();
    if (rng() % 4 != 0) b.change.new_row = random_row();
    std::vector<Action> actions;
    std::vector<RenderFailure> failures;
    EXPECT_NO_THROW(rules.plan(b.change, actions, &failures));
    for (const auto& a : actions) EXPECT_FALSE(a.key.empty());
  }
}

// ---------------------------------------------------------------------------------------
// Loading errors: every one, with file:line:column.

struct ErrorCase {
  std::string name;
  std::string yaml;
  std::string errors;  // Diagnostics::format()
};

class RulesLoadError : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(RulesLoadError, ReportsEveryProblemWithItsPosition) {
  const auto& c = GetParam();
  EXPECT_EQ(load_errors(c.yaml), c.errors) << c.name;
}

std::string rule(const std::string& body) {
  return "version: 1\nrules:\n  - name: r\n    table: blog_post\n" + body;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RulesLoadError,
    ::testing::Values(
        ErrorCase{"yaml syntax", "version: 1\nrules: [\n",
                  "r.yaml:3:1: error: end of sequence flow not found\n"},
        ErrorCase{"not a map", "- a\n",
                  "r.yaml:1:1: error: a rules file must be a map with 'version: 1' and 'rules:'\n"},
        ErrorCase{"missing version and rules", "defaults: {}\n",
                  "r.yaml:1:1: error: missing required key 'version' (this walbust reads "
                  "'version: 1')\nr.yaml:1:1: error: missing required key 'rules'\n"},
        ErrorCase{"wrong version", "version: 2\nrules: []\n",
                  "r.yaml:1:10: error: unsupported rules file version (this walbust reads "
                  "'version: 1')\n"},
        ErrorCase{"unknown top-level key", "version: 1\nrule: []\nrules: []\n",
                  "r.yaml:2:1: error: unknown key 'rule' (did you mean 'rules'?)\n"},
        ErrorCase{"rules not a list", "version: 1\nrules: {}\n",
                  "r.yaml:2:8: error: 'rules' must be a list of rules\n"},
        ErrorCase{"rule not a map", "version: 1\nrules:\n  - x\n",
                  "r.yaml:3:5: error: a rule must be a map\n"},
        ErrorCase{"typo in a rule key", rule("    tabel: x\n    delete: [k]\n"),
                  "r.yaml:5:5: error: unknown key 'tabel' (did you mean 'table'?)\n"},
        ErrorCase{"duplicate key", rule("    delete: [a]\n    delete: [b]\n"),
                  "r.yaml:6:5: error: duplicate key 'delete'\n"},
        ErrorCase{"missing name and table", "version: 1\nrules:\n  - delete: [k]\n",
                  "r.yaml:3:5: error: missing required key 'name'\nr.yaml:3:5: error: missing "
                  "required key 'table'\n"},
        ErrorCase{"name not a string",
                  "version: 1\nrules:\n  - name: [a]\n    table: t\n    delete: [k]\n",
                  "r.yaml:3:11: error: 'name' must be a string\n"},
        ErrorCase{
            "bad table", "version: 1\nrules:\n  - name: r\n    table: a.b.c\n    delete: [k]\n",
            "r.yaml:4:12: error: invalid table name 'a.b.c' (expected schema.table or table)\n"},
        ErrorCase{"no action", rule(""),
                  "r.yaml:3:5: error: rule has no action (expected delete, delete_pattern, "
                  "bump_version, fragment or publish)\n"},
        ErrorCase{"empty action", rule("    delete: []\n"),
                  "r.yaml:5:13: error: 'delete' must not be empty\n"},
        ErrorCase{"action not a list", rule("    delete: post_{id}\n"),
                  "r.yaml:5:13: error: 'delete' must be a list of strings\n"},
        ErrorCase{"action item not a string", rule("    delete: [[a]]\n"),
                  "r.yaml:5:14: error: 'delete' must be a list of strings\n"},
        ErrorCase{"empty template", rule("    delete: [\"\"]\n"),
                  "r.yaml:5:14: error: empty key template\n"},
        ErrorCase{"unknown op", rule("    on: [insert, upsert]\n    delete: [k]\n"),
                  "r.yaml:5:18: error: unknown operation 'upsert' (expected insert, update, "
                  "delete or truncate)\n"},
        ErrorCase{"empty on", rule("    on: []\n    delete: [k]\n"),
                  "r.yaml:5:9: error: 'on' must not be empty\n"},
        ErrorCase{"changed with ignore_changes",
                  rule("    changed: [a]\n    ignore_changes: [b]\n    delete: [k]\n"),
                  "r.yaml:6:5: error: 'changed' and 'ignore_changes' cannot be used together\n"},
        ErrorCase{"bad column in changed", rule("    changed: [\"a b\"]\n    delete: [k]\n"),
                  "r.yaml:5:15: error: invalid column name 'a b'\n"},
        ErrorCase{"when not a map", rule("    when: [a]\n    delete: [k]\n"),
                  "r.yaml:5:11: error: 'when' must be a non-empty map of column: value\n"},
        ErrorCase{"when value not scalar", rule("    when: {a: [1]}\n    delete: [k]\n"),
                  "r.yaml:5:15: error: 'when' values must be scalars\n"},
        ErrorCase{"template errors at their column",
                  rule("    delete:\n      - \"post_{id\"\n      - post_{id|lowr}\n"),
                  "r.yaml:6:15: error: unclosed '{' (write '{{' for a literal brace)\n"
                  "r.yaml:7:18: error: unknown filter 'lowr' (expected lower, upper, md5 or "
                  "python)\n"},
        ErrorCase{"old on insert-only rule",
                  rule("    on: [insert]\n    delete: [\"k_{old.id}\"]\n"),
                  "r.yaml:6:17: error: '{old.id}' can never render: the rule fires on insert "
                  "only, which has no previous row\n"},
        ErrorCase{"new on delete-only rule",
                  rule("    on: [delete]\n    delete: [\"k_{new.id}\"]\n"),
                  "r.yaml:6:17: error: '{new.id}' can never render: the rule fires on delete "
                  "only, which has no new row\n"},
        ErrorCase{
            "bad key format and django",
            rule("    key_format: Django\n    django: {key_prefix: a, version: x, "
                 "prefix: b}\n    delete: [k]\n"),
            "r.yaml:5:17: error: unknown key_format 'Django' (expected plain or django)\n"
            "r.yaml:6:41: error: unknown key 'prefix' (expected one of: key_prefix, version)\n"
            "r.yaml:6:38: error: 'version' must be an integer\n"},
        ErrorCase{"bad durations",
                  "version: 1\ndefaults:\n  redelete_after: 5 sec\nrules:\n  - name: r\n"
                  "    table: t\n    redelete_after: 2d\n    delete: [k]\n",
                  "r.yaml:3:19: error: invalid duration for 'redelete_after' (expected e.g. "
                  "500ms, 2s, 1m, 1h or 0)\nr.yaml:7:21: error: invalid duration for "
                  "'redelete_after' (expected e.g. 500ms, 2s, 1m, 1h or 0)\n"},
        ErrorCase{"null not a scalar", rule("    null: [x]\n    delete: [k]\n"),
                  "r.yaml:5:11: error: 'null' must be skip or a string to render NULL as\n"},
        ErrorCase{"unknown defaults key", "version: 1\ndefaults:\n  keyformat: django\nrules: []\n",
                  "r.yaml:3:3: error: unknown key 'keyformat' (did you mean 'key_format'?)\n"},
        ErrorCase{"fragment problems",
                  rule("    fragment:\n      - {vary_on: [\"{id\"], nam: x}\n      - sidebar\n"),
                  "r.yaml:6:28: error: unknown key 'nam' (did you mean 'name'?)\n"
                  "r.yaml:6:9: error: missing required key 'name'\n"
                  "r.yaml:6:21: error: unclosed '{' (write '{{' for a literal brace)\n"
                  "r.yaml:7:9: error: a fragment must be a map with 'name' and optional "
                  "'vary_on'\n"},
        ErrorCase{"duplicate when column", rule("    when: {a: 1, a: 2}\n    delete: [k]\n"),
                  "r.yaml:5:18: error: duplicate key 'a'\n"},
        ErrorCase{"targets not a list", rule("    targets: main\n    delete: [k]\n"),
                  "r.yaml:5:14: error: 'targets' must be a list of strings\n"}));

TEST(RulesLoad, DuplicateNamesAcrossFilesPointAtTheFirst) {
  Diagnostics diags;
  (void)RuleSet::load({{"a.yaml", kBlogRule},
                       {"b.yaml",
                        "version: 1\nrules:\n  - name: other\n"
                        "    table: t\n    delete: [k]\n"
                        "  - name: post-pages\n    table: t\n"
                        "    delete: [k]\n"}},
                      diags);
  EXPECT_EQ(diags.format(),
            "b.yaml:6:11: error: duplicate rule name 'post-pages' (first defined at a.yaml:3)\n");
}

TEST(RulesLoad, ReportsErrorsOfEveryFileAndRule) {
  Diagnostics diags;
  (void)RuleSet::load(
      {{"a.yaml", rule("    delete: [\"{\"]\n")}, {"b.yaml", "version: 3\nrules: []\n"}}, diags);
  EXPECT_EQ(diags.size(), 2u) << diags.format();
}

TEST(RulesLoad, AcceptsEveryDocumentedOption) {
  const RuleSet rules = load_ok(R"(version: 1
defaults:
  key_format: plain
  django: {key_prefix: "", version: 1}
  null: skip
  redelete_after: 0
rules:
  - name: post-pages
    table: public.blog_post
    on: [insert, update, delete, truncate]
    ignore_changes: [view_count]
    when: {status: published, is_featured: true, deleted_at: null, rank: 1.50}
    delete: ["post_detail_{id}", "home_page_posts", "{{literal}}"]
    delete_pattern: ["user:{author_id}:*"]
    bump_version: ["article_version_{id}"]
    fragment:
      - {name: sidebar, vary_on: ["{author_id}"]}
    key_format: django
    django: {key_prefix: site, version: 2}
    null: None
    redelete_after: 1h
    targets: [main]
  - name: by-change
    table: blog_post
    changed: [title]
    redelete_after: 0
    delete: ["x_{old.slug}"]
)");
  EXPECT_EQ(rules.size(), 2u);
  ChangeBuilder b(Op::Insert);
  b.rel->columns.push_back(Column{"deleted_at"});
  b.rel->columns.push_back(Column{"rank"});
  b.new_row({{"id", T("1")},
             {"status", T("published")},
             {"is_featured", T("t")},
             {"deleted_at", N},
             {"rank", T("1.50")},
             {"author_id", N}});
  std::vector<Action> actions;
  rules.plan(b.change, actions);
  ASSERT_FALSE(actions.empty());
  EXPECT_EQ(actions[0].key, "site:2:post_detail_1");
  EXPECT_EQ(actions[0].redelete_after_ms, 3'600'000u);
  EXPECT_EQ(actions[2].key, "site:2:{literal}");
  EXPECT_EQ(actions[3].key, "site:2:user:None:*");
}

}  // namespace
}  // namespace walbust
