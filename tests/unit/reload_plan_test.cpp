#include "walbust/core/reload_plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace walbust {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

RuleSet three_rules() {
  Diagnostics diags;
  RuleSet rules = RuleSet::load({{"r.yaml", R"(version: 1
rules:
  - name: everywhere
    table: blog_post
    delete: ["a_{id}"]
  - name: pages-only
    table: blog_post
    targets: [pages]
    delete: ["b_{id}"]
  - name: new-target
    table: blog_post
    targets: [sessions]
    delete: ["c_{id}"]
)"}},
                                diags);
  EXPECT_TRUE(diags.empty()) << diags.format();
  return rules;
}

std::vector<RedisTarget> targets(std::vector<std::string> names) {
  std::vector<RedisTarget> out;
  for (auto& name : names) {
    out.emplace_back();
    out.back().name = std::move(name);
  }
  return out;
}

// A config written with a plain redis: section (one target called "default").
Config single_target() {
  Config c;
  c.path = "/etc/walbust/walbust.yaml";
  c.redis_configured = true;
  c.targets = targets({"default"});
  return c;
}

Config two_targets() {
  Config c = single_target();
  c.targets = targets({"pages", "sessions"});
  return c;
}

TEST(RuleTargetMasks, ARuleWithoutTargetsSendsToEveryTargetAndANamedOneOnlyToIt) {
  const RuleSet rules = three_rules();
  EXPECT_THAT(rule_target_masks(rules, targets({"pages", "sessions"})),
              ElementsAre(0b11u, 0b01u, 0b10u));
}

TEST(RuleTargetMasks, ARuleNamingATargetThatDoesNotRunSendsNowhereAndIsNamed) {
  const RuleSet rules = three_rules();
  const auto masks = rule_target_masks(rules, targets({"pages"}));
  EXPECT_THAT(masks, ElementsAre(0b1u, 0b1u, 0u));
  EXPECT_THAT(rules_sending_nowhere(rules, masks), ElementsAre("new-target"));
}

TEST(RestartOnlyChanges, AnUnchangedConfigReportsNothing) {
  EXPECT_THAT(restart_only_changes(two_targets(), two_targets()), IsEmpty());
}

TEST(RestartOnlyChanges, RulesOnGapAndLogApplyAtOnceAndAreNotReported) {
  Config loaded = single_target();
  loaded.rules = {"rules.d/*.yaml"};
  loaded.on_gap = "flushdb";
  loaded.log.level = "debug";
  loaded.log.format = "json";
  EXPECT_THAT(restart_only_changes(single_target(), loaded), IsEmpty());
}

TEST(RestartOnlyChanges, ATlsOnlyChangeIsReportedForItsTarget) {
  Config loaded = two_targets();
  loaded.targets[1].settings.tls.ca_file = "/etc/ssl/redis-ca.pem";
  EXPECT_THAT(restart_only_changes(two_targets(), loaded), ElementsAre("targets.sessions.tls"));

  Config unverified = single_target();
  unverified.targets[0].settings.tls.verify = false;
  EXPECT_THAT(restart_only_changes(single_target(), unverified), ElementsAre("redis.tls"));
}

TEST(RestartOnlyChanges, ASentinelOnlyChangeIsReportedForItsTarget) {
  Config loaded = single_target();
  loaded.targets[0].settings.sentinel.nodes = {"10.0.0.5:26379"};
  EXPECT_THAT(restart_only_changes(single_target(), loaded), ElementsAre("redis.sentinel"));
}

TEST(RestartOnlyChanges, AWaitOnlyChangeIsReportedForItsTarget) {
  Config loaded = two_targets();
  loaded.targets[0].settings.wait.replicas = 1;
  EXPECT_THAT(restart_only_changes(two_targets(), loaded), ElementsAre("targets.pages.wait"));
}

TEST(RestartOnlyChanges, AnyOtherTargetSettingNamesTheTarget) {
  Config loaded = single_target();
  loaded.targets[0].settings.db = 3;
  loaded.targets[0].settings.endpoint.password = "changed";
  EXPECT_THAT(restart_only_changes(single_target(), loaded), ElementsAre("redis"));
}

TEST(RestartOnlyChanges, AddedAndRemovedTargetsAreNamedAndAReorderingIsNot) {
  Config loaded = two_targets();
  loaded.targets = targets({"sessions", "events"});
  EXPECT_THAT(restart_only_changes(two_targets(), loaded),
              ElementsAre("targets.pages", "targets.events"));

  Config reordered = two_targets();
  std::swap(reordered.targets[0], reordered.targets[1]);
  EXPECT_THAT(restart_only_changes(two_targets(), reordered), IsEmpty());
}

TEST(RestartOnlyChanges, EveryPostgresSettingIsReported) {
  Config loaded = single_target();
  loaded.postgres.create_slot = false;
  EXPECT_THAT(restart_only_changes(single_target(), loaded), ElementsAre("postgres"));
}

TEST(RestartOnlyChanges, BatchStateMetricsAndReplicasAreReportedEachByItsKey) {
  Config loaded = single_target();
  loaded.batch.max_delay = std::chrono::milliseconds(5);
  loaded.state_dir = "/var/lib/walbust";
  loaded.metrics_listen = "";
  loaded.replicas.grace = std::chrono::milliseconds(250);
  EXPECT_THAT(restart_only_changes(single_target(), loaded),
              ElementsAre("batch", "state_dir", "metrics.listen", "replicas"));
}

TEST(TakeReloadable, CopiesRulesOnGapAndLogAndNothingElse) {
  Config running = single_target();
  Config loaded = two_targets();
  loaded.rules = {"more.yaml"};
  loaded.on_gap = "flush_rules";
  loaded.log.level = "warn";
  loaded.postgres.slot = "other";
  take_reloadable(running, loaded);
  EXPECT_THAT(running.rules, ElementsAre("more.yaml"));
  EXPECT_EQ(running.on_gap, "flush_rules");
  EXPECT_EQ(running.log.level, "warn");
  EXPECT_EQ(running.postgres.slot, "walbust");
  EXPECT_EQ(running.targets.size(), 1u);
}

}  // namespace
}  // namespace walbust
