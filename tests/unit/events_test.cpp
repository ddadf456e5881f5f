// publish: rules (parsing, validation, the keys a change publishes) and EventBuilder (one
// event per transaction and destination, deduplicated, in bounded parts).
#include "walbust/core/events.h"

#include <gtest/gtest.h>

#include <map>

#include "support/rules_text.h"
#include "walbust/core/rule_cases.h"

namespace walbust {
namespace {

using testing::load_errors;
using testing::load_ok;
using testing::T;

Change change(Op op, const std::map<std::string, std::string>& old_values,
              const std::map<std::string, std::string>& new_values) {
  auto rel = std::make_shared<Relation>();
  rel->schema = "public";
  rel->name = "blog_post";
  rel->replica_identity = 'f';
  for (const char* c : {"id", "category_id", "title"}) rel->columns.push_back(Column{c, 25});
  Change c;
  c.op = op;
  c.relation = rel;
  c.commit_lsn = 0x1A2B3C8;
  c.xid = 745;
  const auto row = [&](const std::map<std::string, std::string>& values) {
    Row r(rel->columns.size(), Value{Value::Kind::Absent, {}});
    for (const auto& [col, v] : values) r[static_cast<std::size_t>(rel->column_index(col))] = T(v);
    return r;
  };
  if (!old_values.empty()) c.old_row = row(old_values);
  if (!new_values.empty()) c.new_row = row(new_values);
  return c;
}

// "channel NAME key" / "stream NAME pattern*" lines.
std::vector<std::string> published(const RuleSet& rules, const Change& c) {
  std::vector<Action> actions;
  std::vector<PublishedKey> keys;
  rules.plan(c, actions, nullptr, &keys);
  std::vector<std::string> out;
  for (const auto& k : keys) {
    const auto& d = rules.rule(k.rule).publish.at(k.destination);
    out.push_back(std::string(publish_kind_name(d.kind)) + " " + d.name + " " + k.key +
                  (k.pattern ? " (pattern)" : ""));
  }
  return out;
}

const char* kRules = R"(version: 1
rules:
  - name: post-pages
    table: blog_post
    delete: ["post_detail_{id}", "category_posts_{category_id}"]
    publish:
      - channel: cache-invalidation
        keys: ["post_detail_{id}"]
      - stream: walbust:invalidations
        maxlen: 5000
)";

TEST(PublishRules, ParsesChannelAndStreamWithDefaultKeys) {
  const RuleSet rules = load_ok(kRules);
  const auto& publish = rules.rule(0).publish;
  ASSERT_EQ(publish.size(), 2U);
  EXPECT_EQ(publish[0], (PublishDestination{PublishKind::Channel, "cache-invalidation", 0}));
  EXPECT_EQ(publish[1], (PublishDestination{PublishKind::Stream, "walbust:invalidations", 5000}));
}

TEST(PublishRules, StreamMaxlenDefaultsToOneHundredThousand) {
  const RuleSet rules =
      load_ok("version: 1\nrules:\n  - {name: a, table: t, delete: [k], publish: [{stream: s}]}\n");
  EXPECT_EQ(rules.rule(0).publish.at(0).maxlen, kDefaultStreamMaxlen);
}

TEST(PublishRules, UpdatePublishesOldAndNewKeysOnlyFromItsTemplates) {
  const RuleSet rules = load_ok(kRules);
  const auto keys = published(rules, change(Op::Update, {{"id", "7"}, {"category_id", "3"}},
                                            {{"id", "7"}, {"category_id", "4"}}));
  // Default keys come as the deletes render (new row, then old); explicit keys after them.
  EXPECT_EQ(keys, (std::vector<std::string>{
                      "stream walbust:invalidations post_detail_7",
                      "stream walbust:invalidations category_posts_4",
                      "stream walbust:invalidations category_posts_3",
                      "channel cache-invalidation post_detail_7",
                  }));
}

TEST(PublishRules, DjangoKeysArePublishedAfterKeyFormat) {
  const RuleSet rules = load_ok(R"(version: 1
defaults: {key_format: django, django: {key_prefix: shop, version: 2}}
rules:
  - name: a
    table: blog_post
    delete: ["post_{id}"]
    fragment: [{name: sidebar, vary_on: ["{id}"]}]
    publish: [{channel: c}]
)");
  const auto keys = published(rules, change(Op::Insert, {}, {{"id", "7"}}));
  ASSERT_EQ(keys.size(), 2U);
  EXPECT_EQ(keys[0], "channel c shop:2:post_7");
  EXPECT_EQ(keys[1].rfind("channel c shop:2:template.cache.sidebar.", 0), 0U) << keys[1];
  EXPECT_EQ(published(rules, change(Op::Truncate, {}, {})),
            (std::vector<std::string>{"channel c shop:2:post_* (pattern)",
                                      "channel c shop:2:template.cache.sidebar.* (pattern)"}));
}

TEST(PublishRules, TruncatePublishesPatternsAndConstantKeys) {
  const RuleSet rules = load_ok(R"(version: 1
rules:
  - name: a
    table: blog_post
    delete: ["post_{id}", "home"]
    publish: [{channel: c}]
)");
  const auto keys = published(rules, change(Op::Truncate, {}, {}));
  EXPECT_EQ(keys, (std::vector<std::string>{"channel c post_* (pattern)", "channel c home"}));
}

TEST(PublishRules, APublishOnlyRuleIsValid) {
  const RuleSet rules = load_ok(
      "version: 1\nrules:\n  - {name: a, table: blog_post, publish: [{channel: c, keys: "
      "['p_{id}']}]}\n");
  std::vector<Action> actions;
  rules.plan(change(Op::Insert, {}, {{"id", "1"}}), actions);
  EXPECT_TRUE(actions.empty());
  EXPECT_EQ(published(rules, change(Op::Insert, {}, {{"id", "1"}})),
            (std::vector<std::string>{"channel c p_1"}));
}

TEST(PublishRules, NoPublishedOutputWithoutPublishEntries) {
  const RuleSet rules =
      load_ok("version: 1\nrules:\n  - {name: a, table: blog_post, delete: ['p_{id}']}\n");
  EXPECT_TRUE(published(rules, change(Op::Insert, {}, {{"id", "1"}})).empty());
}

struct BadPublish {
  const char* entry;
  const char* error;
};

class PublishValidation : public ::testing::TestWithParam<BadPublish> {};

TEST_P(PublishValidation, ReportsFileLineColumn) {
  const std::string yaml = std::string(
                               "version: 1\nrules:\n  - name: a\n    table: t\n    delete: [k]\n"
                               "    publish: ") +
                           GetParam().entry + "\n";
  const std::string errors = load_errors(yaml);
  EXPECT_NE(errors.find(GetParam().error), std::string::npos) << errors;
  EXPECT_NE(errors.find("r.yaml:6:"), std::string::npos) << errors;
}

INSTANTIATE_TEST_SUITE_P(
    Errors, PublishValidation,
    ::testing::Values(
        BadPublish{"[{channel: c, stream: s}]", "'channel' and 'stream' cannot be used together"},
        BadPublish{"[{keys: [k]}]", "needs 'channel' (PUBLISH) or 'stream' (XADD)"},
        BadPublish{"[{stream: s, maxlen: 0}]", "'maxlen' must be a positive integer"},
        BadPublish{"[{stream: s, maxlen: -5}]", "'maxlen' must be a positive integer"},
        BadPublish{"[{stream: s, maxlen: lots}]", "'maxlen' must be a positive integer"},
        BadPublish{"[{channel: c, maxlen: 10}]", "'maxlen' applies to a stream"},
        BadPublish{"[{channel: c, kyes: [k]}]", "unknown key 'kyes' (did you mean 'keys'?)"},
        BadPublish{"[{channel: c, keys: []}]", "'keys' must not be empty"},
        BadPublish{"[{channel: ''}]", "the name must not be empty"},
        BadPublish{"[{channel: c}, {channel: c}]", "already publishes to channel 'c'"},
        BadPublish{"[{channel: c, keys: ['{id']}]", "r.yaml:6:"},
        BadPublish{"[]", "'publish' must be a non-empty list"},
        BadPublish{"{channel: c}", "'publish' must be a non-empty list"}));

TEST(PublishRules, DefaultKeysNeedDeleteKeys) {
  const std::string errors = load_errors(
      "version: 1\nrules:\n  - name: a\n    table: t\n    bump_version: [v]\n    publish: "
      "[{channel: c}]\n");
  EXPECT_NE(errors.find("r.yaml:6:15: error: this publish entry has no 'keys'"), std::string::npos)
      << errors;
}

TEST(PublishRules, OneStreamHasOneMaxlenAcrossRules) {
  const std::string errors = load_errors(R"(version: 1
rules:
  - {name: a, table: t, delete: [k], publish: [{stream: s, maxlen: 10}]}
  - {name: b, table: t, delete: [k], publish: [{stream: s, maxlen: 20}]}
  - {name: c, table: t, delete: [k], publish: [{stream: s, maxlen: 10}]}
)");
  EXPECT_NE(errors.find("r.yaml:4:"), std::string::npos) << errors;
  EXPECT_NE(errors.find("stream 's' has maxlen 20 here but 10 in rule 'a'"), std::string::npos)
      << errors;
  EXPECT_EQ(errors.find("r.yaml:5:"), std::string::npos) << errors;
}

TEST(PublishRules, TableNeedsIncludePublishedColumns) {
  const RuleSet rules = load_ok(
      "version: 1\nrules:\n  - {name: a, table: t, delete: [k], publish: [{channel: c, keys: "
      "['x_{slug}']}]}\n");
  EXPECT_EQ(rules.table_needs().at(0).columns.count("slug"), 1U);
}

// ---------------------------------------------------------------------------------------
// EventBuilder

const PublishEvent& event_of(const TargetedAction& a) {
  EXPECT_EQ(a.action.kind, ActionKind::Publish);
  return *a.action.event;
}

std::vector<PublishedKey> keys_for(const RuleSet& rules, const Change& c) {
  std::vector<Action> actions;
  std::vector<PublishedKey> keys;
  rules.plan(c, actions, nullptr, &keys);
  return keys;
}

const char* kTwoRules = R"(version: 1
rules:
  - {name: a, table: blog_post, delete: ["post_{id}", home], publish: [{channel: c}]}
  - {name: b, table: blog_post, delete: [home, "cat_{category_id}"], publish: [{channel: c}, {stream: s}]}
)";

TEST(EventBuilder, OneMessagePerDestinationDeduplicatedAcrossRulesAndChanges) {
  const RuleSet rules = load_ok(kTwoRules);
  EventBuilder builder;
  std::vector<TargetedAction> out;
  const std::vector<std::uint64_t> masks{1, 1};
  builder.begin(0x1A2B3C8, 745);
  builder.add(rules, keys_for(rules, change(Op::Insert, {}, {{"id", "7"}, {"category_id", "3"}})),
              masks, out);
  builder.add(rules, keys_for(rules, change(Op::Insert, {}, {{"id", "8"}, {"category_id", "3"}})),
              masks, out);
  EXPECT_TRUE(out.empty());
  builder.commit(out);
  ASSERT_EQ(out.size(), 2U);
  EXPECT_EQ(event_json(event_of(out[0])),
            R"({"lsn":"0/1A2B3C8","xid":745,"keys":["post_7","home","cat_3","post_8"]})");
  EXPECT_EQ(out[0].action.key, "c");
  EXPECT_EQ(out[0].action.rule, 0U);
  EXPECT_EQ(event_command(event_of(out[1])),
            (std::vector<std::string>{"XADD", "s", "MAXLEN", "~", "100000", "*", "lsn", "0/1A2B3C8",
                                      "xid", "745", "keys", R"(["home","cat_3"])"}));
  EXPECT_EQ(event_command(event_of(out[0])).at(0), "PUBLISH");
  EXPECT_EQ(event_command(event_of(out[0])).at(1), "c");
}

TEST(EventBuilder, ATransactionWithoutPublishedKeysSendsNothing) {
  EventBuilder builder;
  std::vector<TargetedAction> out;
  builder.begin(1, 1);
  builder.commit(out);
  EXPECT_TRUE(out.empty());
}

TEST(EventBuilder, LargeTransactionsGoInPartsWhileTheyStreamIn) {
  const RuleSet rules = load_ok(
      "version: 1\nrules:\n  - {name: a, table: blog_post, delete: ['p_{id}'], "
      "publish: [{stream: s, maxlen: 7}]}\n");
  EventBuilder builder(3);
  std::vector<TargetedAction> out;
  builder.begin(0x10, 9);
  for (int i = 0; i < 7; ++i) {
    builder.add(rules, keys_for(rules, change(Op::Insert, {}, {{"id", std::to_string(i)}})), {1},
                out);
  }
  ASSERT_EQ(out.size(), 2U);  // the third part waits for the commit or a next key
  builder.commit(out);
  ASSERT_EQ(out.size(), 3U);
  EXPECT_EQ(event_json(event_of(out[0])),
            R"({"lsn":"0/10","xid":9,"part":1,"last":false,"keys":["p_0","p_1","p_2"]})");
  EXPECT_EQ(event_json(event_of(out[2])),
            R"({"lsn":"0/10","xid":9,"part":3,"last":true,"keys":["p_6"]})");
  const auto argv = event_command(event_of(out[1]));
  EXPECT_EQ(std::vector<std::string>(argv.end() - 4, argv.end()),
            (std::vector<std::string>{"part", "2", "last", "0"}));
}

TEST(EventBuilder, AHotKeyIsSentOnceAcrossPartsWithinTheBound) {
  const RuleSet rules = load_ok(kTwoRules);
  EventBuilder builder(2);  // parts of 2 keys; seen keys remembered for 16 keys
  std::vector<TargetedAction> out;
  builder.begin(0x10, 9);
  for (int i = 0; i < 20; ++i) {
    builder.add(
        rules,
        keys_for(rules, change(Op::Insert, {}, {{"id", std::to_string(i)}, {"category_id", "1"}})),
        {1, 0}, out);
  }
  builder.commit(out);
  std::size_t home = 0;
  std::size_t total = 0;
  for (const auto& a : out) {
    for (const auto& k : event_of(a).keys) {
      home += k == "home" ? 1 : 0;
      ++total;
    }
  }
  EXPECT_EQ(home, 2U);  // once, then once more after 16 keys were seen
  EXPECT_EQ(total, 20U + 2U);
}

TEST(EventBuilder, AFullLastPartIsSentAtCommitNeverAnEmptyOne) {
  const RuleSet rules = load_ok(
      "version: 1\nrules:\n  - {name: a, table: blog_post, delete: ['p_{id}'], "
      "publish: [{channel: c}]}\n");
  EventBuilder builder(2);
  std::vector<TargetedAction> out;
  builder.begin(0x10, 9);
  for (int i = 0; i < 4; ++i) {
    builder.add(rules, keys_for(rules, change(Op::Insert, {}, {{"id", std::to_string(i)}})), {1},
                out);
  }
  builder.commit(out);
  ASSERT_EQ(out.size(), 2U);
  EXPECT_EQ(event_of(out[1]).part, 2U);
  EXPECT_TRUE(event_of(out[1]).last);
  EXPECT_EQ(event_of(out[1]).keys.size(), 2U);
}

TEST(EventBuilder, PartsAreBoundedInBytesToo) {
  const RuleSet rules = load_ok(
      "version: 1\nrules:\n  - {name: a, table: blog_post, delete: ['{title}'], "
      "publish: [{channel: c}]}\n");
  EventBuilder builder(1000, 100);
  std::vector<TargetedAction> out;
  builder.begin(1, 1);
  for (int i = 0; i < 5; ++i) {
    const std::string title = std::string(60, 'x') + std::to_string(i);
    builder.add(rules, keys_for(rules, change(Op::Insert, {}, {{"title", title}})), {1}, out);
  }
  builder.commit(out);
  EXPECT_EQ(out.size(), 3U);
}

TEST(EventBuilder, EachTargetGetsItsOwnEventWithItsRulesKeys) {
  const RuleSet rules = load_ok(kTwoRules);
  EventBuilder builder;
  std::vector<TargetedAction> out;
  builder.begin(1, 2);
  // Rule a goes to target 0 only, rule b to targets 0 and 1.
  builder.add(rules, keys_for(rules, change(Op::Insert, {}, {{"id", "7"}, {"category_id", "3"}})),
              {0b01, 0b11}, out);
  builder.commit(out);
  ASSERT_EQ(out.size(), 4U);
  std::map<std::pair<std::size_t, std::string>, std::vector<std::string>> by;
  for (const auto& a : out) by[{a.target, a.action.key}] = event_of(a).keys;
  EXPECT_EQ((by[{0, "c"}]), (std::vector<std::string>{"post_7", "home", "cat_3"}));
  EXPECT_EQ((by[{1, "c"}]), (std::vector<std::string>{"home", "cat_3"}));
  EXPECT_EQ((by[{0, "s"}]), (std::vector<std::string>{"home", "cat_3"}));
  EXPECT_EQ((by[{1, "s"}]), (std::vector<std::string>{"home", "cat_3"}));
}

TEST(EventBuilder, ResetDropsAnAbandonedTransaction) {
  const RuleSet rules = load_ok(kTwoRules);
  EventBuilder builder;
  std::vector<TargetedAction> out;
  builder.begin(1, 2);
  builder.add(rules, keys_for(rules, change(Op::Insert, {}, {{"id", "7"}, {"category_id", "3"}})),
              {1, 1}, out);
  builder.reset();
  builder.commit(out);
  EXPECT_TRUE(out.empty());
}

TEST(EventBuilder, TruncatePatternsTravelInTheirOwnField) {
  const RuleSet rules = load_ok(kTwoRules);
  EventBuilder builder;
  std::vector<TargetedAction> out;
  builder.begin(0x20, 3);
  builder.add(rules, keys_for(rules, change(Op::Truncate, {}, {})), {1, 0}, out);
  builder.commit(out);
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(event_json(event_of(out[0])),
            R"({"lsn":"0/20","xid":3,"keys":["home"],"patterns":["post_*"]})");
}

TEST(EventBuilder, KeysAreJsonEscapedBinarySafe) {
  PublishEvent e;
  e.lsn = 1;
  e.keys = {"a\"b", "line\nbreak", std::string("\xff", 1)};
  EXPECT_EQ(event_json(e),
            "{\"lsn\":\"0/1\",\"xid\":0,\"keys\":[\"a\\\"b\",\"line\\nbreak\",\"\xEF\xBF\xBD\"]}");
}

}  // namespace
}  // namespace walbust

namespace walbust {
namespace {

std::vector<CaseResult> run_cases(const std::string& cases) {
  const RuleSet rules = load_ok(kTwoRules);
  Diagnostics diags;
  auto results = run_rule_cases(rules, {"c.yaml", cases}, diags);
  EXPECT_TRUE(diags.empty()) << diags.format();
  return results;
}

TEST(PublishRuleCases, ExpectPublishChecksEveryChannelAndStream) {
  const auto results = run_cases(R"(cases:
  - name: right
    table: blog_post
    op: insert
    new: {id: 7, category_id: 3}
    expect:
      delete: [post_7, home, cat_3]
      publish: {c: [post_7, home, cat_3], s: [home, cat_3]}
  - name: a missing stream and a wrong key
    table: blog_post
    op: insert
    new: {id: 7, category_id: 3}
    expect:
      delete: [post_7, home, cat_3]
      publish: {c: [post_7, home, cat_4]}
  - name: without publish in expect, published keys are not checked
    table: blog_post
    op: insert
    new: {id: 7, category_id: 3}
    expect: {delete: [post_7, home, cat_3]}
)");
  ASSERT_EQ(results.size(), 3U);
  EXPECT_TRUE(results[0].passed) << results[0].difference;
  EXPECT_FALSE(results[1].passed);
  EXPECT_EQ(results[1].difference,
            "publish c: missing [cat_4]; unexpected [cat_3]; publish s: unexpected [cat_3, home]");
  EXPECT_TRUE(results[2].passed) << results[2].difference;
}

}  // namespace
}  // namespace walbust
