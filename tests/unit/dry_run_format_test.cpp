#include "walbust/core/dry_run_format.h"

#include <gtest/gtest.h>

#include <memory>

namespace walbust {
namespace {

RuleSet blog_rules() {
  Diagnostics d;
  RuleSet rules = RuleSet::load({RuleSource{"r.yaml", R"(version: 1
rules:
  - name: post-pages
    table: blog_post
    delete: ["post_detail_{id}", "category_posts_{category_id}"]
    delete_pattern: ["user:{author_id}:*"]
)"}},
                                d);
  EXPECT_TRUE(d.empty()) << d.format();
  return rules;
}

std::shared_ptr<const Relation> post_relation() {
  auto r = std::make_shared<Relation>();
  r->oid = 1;
  r->schema = "public";
  r->name = "blog_post";
  r->replica_identity = 'f';
  r->columns = {{"id", 23, -1, true},
                {"category_id", 23, -1, true},
                {"author_id", 23, -1, true},
                {"body", 25, -1, true}};
  return r;
}

Value text(std::string s) { return Value{Value::Kind::Text, std::move(s)}; }

Change moved_post() {
  Change c;
  c.op = Op::Update;
  c.relation = post_relation();
  c.old_row = Row{text("7"), text("3"), text("1"), Value{Value::Kind::Null, ""}};
  c.new_row = Row{text("7"), text("4"), text("1"), Value{Value::Kind::Unchanged, ""}};
  c.lsn = 0x1A2B3C8;
  c.xid = 745;
  return c;
}

TEST(DryRunFormat, JsonLineHasTheSpecFieldsInOrder) {
  const RuleSet rules = blog_rules();
  const Change c = moved_post();
  std::vector<Action> actions;
  rules.plan(c, actions);
  const std::string line = format_change_json(c, actions, rules, {}, 10000);
  EXPECT_EQ(
      line,
      R"({"type":"change","lsn":"0/1A2B3C8","xid":745,"table":"public.blog_post","op":"update",)"
      R"("changed":["category_id"],"old":{"id":"7","category_id":"3","author_id":"1","body":null},)"
      R"("new":{"id":"7","category_id":"4","author_id":"1"},"actions":[)"
      R"({"rule":"post-pages","action":"delete","key":"post_detail_7"},)"
      R"({"rule":"post-pages","action":"delete","key":"category_posts_4"},)"
      R"({"rule":"post-pages","action":"delete","key":"category_posts_3"},)"
      R"({"rule":"post-pages","action":"delete_pattern","key":"user:1:*"}]})");
}

TEST(DryRunFormat, ProbesAddExistsAndPatternCounts) {
  const RuleSet rules = blog_rules();
  const Change c = moved_post();
  std::vector<Action> actions;
  rules.plan(c, actions);
  std::vector<ActionProbe> probes(actions.size());
  probes[0].exists = true;
  probes[3] = ActionProbe{true, 10000, true};
  const std::string line = format_change_json(c, actions, rules, probes, 10000);
  EXPECT_NE(
      line.find(R"({"rule":"post-pages","action":"delete","key":"post_detail_7","exists":true})"),
      std::string::npos);
  EXPECT_NE(
      line.find(
          R"("key":"user:1:*","exists":true,"matches":10000,"scan_limit":10000,"truncated":true})"),
      std::string::npos);
  const std::string text = format_change_text(c, actions, rules, probes, 10000);
  EXPECT_EQ(text,
            "0/1A2B3C8  xid 745  public.blog_post  update  changed: category_id\n"
            "    post-pages  delete  post_detail_7  [exists]\n"
            "    post-pages  delete  category_posts_4  [absent]\n"
            "    post-pages  delete  category_posts_3  [absent]\n"
            "    post-pages  delete_pattern  user:1:*  [10000+ keys match, scan stopped at 10000 "
            "keys]\n");
}

TEST(DryRunFormat, WithReadReplicasEachActionSaysWhetherItIsRepeatedAfterReplay) {
  const RuleSet rules = blog_rules();
  const Change c = moved_post();
  std::vector<Action> actions;
  rules.plan(c, actions);
  actions[1].after_replay = false;  // as a rule with after_replay: false plans it
  actions[2].kind = ActionKind::BumpVersion;
  const std::string line = format_change_json(c, actions, rules, {}, 10000, /*replicas=*/true);
  EXPECT_NE(line.find(R"("key":"post_detail_7","after_replay":true})"), std::string::npos) << line;
  EXPECT_NE(line.find(R"("key":"category_posts_4","after_replay":false})"), std::string::npos)
      << line;
  EXPECT_NE(line.find(R"("key":"category_posts_3","value":"","after_replay":false})"),
            std::string::npos)
      << line;
  const std::string text = format_change_text(c, actions, rules, {}, 10000, true);
  EXPECT_NE(text.find("    post-pages  delete  post_detail_7  [again after replay]\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("    post-pages  delete  category_posts_4\n"), std::string::npos) << text;
  // Without replicas nothing changes.
  EXPECT_EQ(format_change_json(c, actions, rules, {}, 10000).find("after_replay"),
            std::string::npos);
}

TEST(DryRunFormat, UnknownPreviousRowAndNoMatch) {
  const RuleSet rules = blog_rules();
  Change c = moved_post();
  c.old_row.reset();
  EXPECT_FALSE(changed_columns(c).has_value());
  const std::string line = format_change_json(c, {}, rules, {}, 0);
  EXPECT_NE(line.find(R"("changed":null,"old":null,)"), std::string::npos);
  EXPECT_NE(line.find(R"("actions":[])"), std::string::npos);
  EXPECT_EQ(format_change_text(c, {}, rules, {}, 0),
            "0/1A2B3C8  xid 745  public.blog_post  update  changed: unknown (no previous row)\n"
            "    (no rule matched)\n");
}

TEST(DryRunFormat, KeysWithControlBytesStayOnOneLine) {
  const RuleSet rules = blog_rules();
  Change c = moved_post();
  std::vector<Action> actions{Action{ActionKind::Delete, 0, "a\nb\x01", "", 0}};
  const std::string text = format_change_text(c, actions, rules, {}, 0);
  EXPECT_NE(text.find("delete  a\\nb\\x01\n"), std::string::npos);
  const std::string json = format_change_json(c, actions, rules, {}, 0);
  EXPECT_NE(json.find(R"("key":"a\nb\u0001")"), std::string::npos);
  actions[0].key = std::string("\xff\xfe", 2);  // not UTF-8: replaced, never an exception
  EXPECT_NO_THROW((void)format_change_json(c, actions, rules, {}, 0));
}

TEST(DryRunFormat, PublishActionsNameTheirChannelOrStreamAndAreNotProbed) {
  Diagnostics d;
  const RuleSet rules = RuleSet::load({RuleSource{"r.yaml", R"(version: 1
rules:
  - name: post-pages
    table: blog_post
    delete: ["post_detail_{id}"]
    publish: [{channel: inv}, {stream: s, keys: ["post_detail_{id}"]}]
)"}},
                                      d);
  ASSERT_TRUE(d.empty()) << d.format();
  Change c = moved_post();
  std::vector<Action> actions;
  std::vector<PublishedKey> published;
  rules.plan(c, actions, nullptr, &published);
  append_publish_actions(rules, published, actions);
  ASSERT_EQ(actions.size(), 3U);
  const std::vector<ActionProbe> probes{{true, 0, false}, {false, 0, false}, {false, 0, false}};
  const std::string json = format_change_json(c, actions, rules, probes, 0);
  EXPECT_NE(
      json.find(
          R"("actions":[{"rule":"post-pages","action":"delete","key":"post_detail_7","exists":true},)"
          R"({"rule":"post-pages","action":"publish","key":"post_detail_7","channel":"inv"},)"
          R"({"rule":"post-pages","action":"publish","key":"post_detail_7","stream":"s"}])"),
      std::string::npos)
      << json;
  const std::string text = format_change_text(c, actions, rules, probes, 0);
  EXPECT_NE(text.find("    post-pages  publish  post_detail_7  -> channel inv\n"
                      "    post-pages  publish  post_detail_7  -> stream s\n"),
            std::string::npos)
      << text;
}

TEST(DryRunFormat, Summaries) {
  DryRunSummary s{10, 4, 12, 9, true};
  EXPECT_EQ(format_summary_json(s),
            R"({"type":"summary","changes":10,"matched":4,"keys":12,"existing":9})");
  EXPECT_EQ(
      format_summary_text(s),
      "10 changes, 4 matched a rule, 12 keys (9 exist in Redis: 75.0% of deletes would hit)\n");
  s.checked_redis = false;
  EXPECT_EQ(format_summary_json(s),
            R"({"type":"summary","changes":10,"matched":4,"keys":12,"existing":null})");
}

}  // namespace
}  // namespace walbust
