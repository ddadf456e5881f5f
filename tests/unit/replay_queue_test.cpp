#include "walbust/core/replay_queue.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace walbust {
namespace {

using Clock = ReplayQueue::Clock;
using std::chrono::milliseconds;

const Clock::time_point t0 = Clock::time_point{} + std::chrono::hours(1);

RuleSet rules() {
  Diagnostics diags;
  RuleSet set = RuleSet::load({{"rules.yaml", R"(version: 1
rules:
  - name: posts
    table: blog_post
    delete: ["post_{id}", "home"]
    delete_pattern: ["user:{author_id}:*"]
    bump_version: ["version_{id}"]
  - name: tags
    table: blog_tag
    delete: ["tag_{id}"]
)"}},
                              diags);
  EXPECT_TRUE(diags.empty());
  return set;
}

Action del(std::string key, std::uint32_t rule = 0) {
  return Action{ActionKind::Delete, rule, std::move(key), {}, 0, true};
}

ReplayQueue::Settings settings(std::size_t replicas = 1) {
  ReplayQueue::Settings s;
  s.replicas = replicas;
  s.grace = milliseconds(100);
  s.max_wait = milliseconds(5000);
  s.transaction_keys = 4;
  s.total_keys = 6;
  return s;
}

std::vector<std::string> keys_of(const ReplayQueue::Released& r) {
  std::vector<std::string> out;
  for (const auto& a : r.actions) out.push_back(a.key);
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ReplayQueue, ATransactionIsRepeatedGraceAfterTheReplicaReplayedIt) {
  const RuleSet set = rules();
  ReplayQueue q(settings());
  q.add(del("post_1"), 1);
  q.add(del("home"), 1);
  q.commit(1, 500, 1000, t0, set);
  EXPECT_EQ(q.wanted(), 500u);
  ReplayQueue::Released r;
  EXPECT_FALSE(q.pop(t0 + milliseconds(1000), r));
  std::vector<std::int64_t> replayed;
  q.observe(0, 499, t0 + milliseconds(10), replayed);
  EXPECT_TRUE(replayed.empty());
  q.observe(0, 500, t0 + milliseconds(20), replayed);
  EXPECT_EQ(replayed, std::vector<std::int64_t>{1000});
  EXPECT_EQ(q.next_due(), t0 + milliseconds(120));
  EXPECT_FALSE(q.pop(t0 + milliseconds(119), r));
  ASSERT_TRUE(q.pop(t0 + milliseconds(120), r));
  EXPECT_EQ(r.ticket, 1u);
  EXPECT_EQ(keys_of(r), (std::vector<std::string>{"home", "post_1"}));
  EXPECT_TRUE(r.timed_out.empty());
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.held_keys(), 0u);
  EXPECT_EQ(q.wanted(), kInvalidLsn);
}

TEST(ReplayQueue, BumpVersionAndOptedOutActionsAreNotHeld) {
  const RuleSet set = rules();
  ReplayQueue q(settings());
  q.add(Action{ActionKind::BumpVersion, 0, "version_1", "500", 0, true}, 1);
  q.add(Action{ActionKind::Delete, 1, "tag_1", {}, 0, false}, 1);
  q.commit(1, 500, 1000, t0, set);
  EXPECT_EQ(q.held_keys(), 0u);
  EXPECT_EQ(q.wanted(), kInvalidLsn);
  ReplayQueue::Released r;
  ASSERT_TRUE(q.pop(t0, r));  // nothing to repeat: leaves at once, nobody is polled
  EXPECT_TRUE(r.actions.empty());
}

TEST(ReplayQueue, AKeyDeletedByManyRowsIsHeldOnceWithEveryTarget) {
  const RuleSet set = rules();
  ReplayQueue q(settings());
  q.add(del("home"), 1);
  q.add(del("home"), 2);
  q.add(Action{ActionKind::DeletePattern, 0, "home", {}, 0, true}, 1);
  q.commit(1, 500, 1000, t0, set);
  EXPECT_EQ(q.held_keys(), 2u);
  std::vector<std::int64_t> replayed;
  q.observe(0, 600, t0, replayed);
  ReplayQueue::Released r;
  ASSERT_TRUE(q.pop(t0 + milliseconds(100), r));
  ASSERT_EQ(r.actions.size(), 2u);
  EXPECT_EQ(r.actions[0].targets, 3u);
  EXPECT_EQ(r.actions[1].kind, ActionKind::DeletePattern);
}

TEST(ReplayQueue, EveryReplicaMustHaveReplayedTheTransaction) {
  const RuleSet set = rules();
  ReplayQueue q(settings(2));
  q.add(del("post_1"), 1);
  q.commit(1, 500, 1000, t0, set);
  std::vector<std::int64_t> replayed;
  q.observe(0, 900, t0 + milliseconds(10), replayed);
  ReplayQueue::Released r;
  EXPECT_FALSE(q.pop(t0 + milliseconds(1000), r));
  EXPECT_EQ(q.oldest_unreplayed_us(1), 1000);
  EXPECT_EQ(q.oldest_unreplayed_us(0), 0);
  q.observe(1, 500, t0 + milliseconds(2000), replayed);
  EXPECT_FALSE(q.pop(t0 + milliseconds(2099), r));
  EXPECT_TRUE(q.pop(t0 + milliseconds(2100), r));
}

TEST(ReplayQueue, ALaggingReplicaHoldsATransactionNoLongerThanMaxWait) {
  const RuleSet set = rules();
  ReplayQueue q(settings(2));
  q.add(del("post_1"), 1);
  q.commit(1, 500, 1000, t0, set);
  std::vector<std::int64_t> replayed;
  q.observe(0, 900, t0, replayed);
  EXPECT_EQ(q.next_due(), t0 + milliseconds(5000));
  ReplayQueue::Released r;
  EXPECT_FALSE(q.pop(t0 + milliseconds(4999), r));
  ASSERT_TRUE(q.pop(t0 + milliseconds(5000), r));
  EXPECT_EQ(r.timed_out, std::vector<std::size_t>{1});
  EXPECT_EQ(keys_of(r), std::vector<std::string>{"post_1"});
}

TEST(ReplayQueue, TransactionsLeaveInCommitOrder) {
  const RuleSet set = rules();
  ReplayQueue q(settings());
  q.add(del("a"), 1);
  q.commit(1, 500, 1000, t0, set);
  q.commit(2, 600, 1001, t0, set);  // nothing to repeat, but behind a waiting one
  q.add(del("b"), 1);
  q.commit(3, 700, 1002, t0, set);
  ReplayQueue::Released r;
  EXPECT_FALSE(q.pop(t0 + milliseconds(1000), r));
  std::vector<std::int64_t> replayed;
  q.observe(0, 650, t0, replayed);
  EXPECT_EQ(replayed.size(), 2u);
  ASSERT_TRUE(q.pop(t0 + milliseconds(100), r));
  EXPECT_EQ(r.ticket, 1u);
  ASSERT_TRUE(q.pop(t0 + milliseconds(100), r));
  EXPECT_EQ(r.ticket, 2u);
  EXPECT_FALSE(q.pop(t0 + milliseconds(100), r));
  EXPECT_EQ(q.wanted(), 700u);
}

TEST(ReplayQueue, AReplicaAlreadyPastACommitCountsAsHavingReplayedIt) {
  const RuleSet set = rules();
  ReplayQueue q(settings());
  std::vector<std::int64_t> replayed;
  q.observe(0, 1000, t0, replayed);
  q.add(del("a"), 1);
  q.commit(1, 500, 1000, t0 + milliseconds(50), set);
  ReplayQueue::Released r;
  EXPECT_FALSE(q.pop(t0 + milliseconds(99), r));
  ASSERT_TRUE(q.pop(t0 + milliseconds(100), r));
  EXPECT_EQ(keys_of(r), std::vector<std::string>{"a"});
}

TEST(ReplayQueue, ACommitReadGraceAfterEveryReplicaReplayedItIsNotRepeated) {
  const RuleSet set = rules();
  ReplayQueue q(settings(2));
  std::vector<std::int64_t> replayed;
  q.observe(0, 1000, t0, replayed);
  q.observe(1, 1000, t0 + milliseconds(20), replayed);
  q.add(del("a"), 1);
  q.commit(1, 500, 1000, t0 + milliseconds(120), set);
  EXPECT_EQ(q.skipped(), 1u);
  EXPECT_EQ(q.held_keys(), 0u);
  EXPECT_EQ(q.wanted(), kInvalidLsn);
  ReplayQueue::Released r;
  ASSERT_TRUE(q.pop(t0 + milliseconds(120), r));
  EXPECT_TRUE(r.actions.empty());
  // Known at the Begin already: the keys are not even collected.
  q.begin(800, t0 + milliseconds(200));
  EXPECT_EQ(q.skipped(), 1u);
  q.add(del("c"), 1);
  EXPECT_EQ(q.open_keys(), 0u);
  q.commit(2, 900, 1001, t0 + milliseconds(200), set);
  EXPECT_EQ(q.skipped(), 2u);
  ASSERT_TRUE(q.pop(t0 + milliseconds(200), r));
  EXPECT_TRUE(r.actions.empty());
  // One replica behind the commit: held as usual.
  q.add(del("b"), 1);
  q.commit(3, 2000, 1001, t0 + milliseconds(500), set);
  EXPECT_EQ(q.skipped(), 2u);
  EXPECT_EQ(q.held_keys(), 1u);
}

TEST(ReplayQueue, AReplicaReportingLessAfterARestartDoesNotUndoItsReplay) {
  const RuleSet set = rules();
  ReplayQueue q(settings());
  q.add(del("a"), 1);
  q.commit(1, 500, 1000, t0, set);
  std::vector<std::int64_t> replayed;
  q.observe(0, 600, t0, replayed);
  q.observe(0, 100, t0 + milliseconds(50), replayed);
  EXPECT_EQ(q.replica_lsn(0), 600u);
  ReplayQueue::Released r;
  EXPECT_TRUE(q.pop(t0 + milliseconds(100), r));
}

TEST(ReplayQueue, AHugeTransactionIsHeldAsItsRulesPatterns) {
  const RuleSet set = rules();
  ReplayQueue q(settings());
  for (int i = 0; i < 10; ++i) q.add(del("post_" + std::to_string(i)), 1);
  EXPECT_EQ(q.open_keys(), 0u);
  q.commit(1, 500, 1000, t0, set);
  EXPECT_EQ(q.overflows(), 1u);
  std::vector<std::int64_t> replayed;
  q.observe(0, 500, t0, replayed);
  ReplayQueue::Released r;
  ASSERT_TRUE(q.pop(t0 + milliseconds(100), r));
  EXPECT_TRUE(r.overflowed);
  // Rule "posts" only: its delete templates as patterns, the constant key, its pattern;
  // not its version key, not rule "tags".
  EXPECT_EQ(keys_of(r), (std::vector<std::string>{"home", "post_*", "user:*:*"}));
}

TEST(ReplayQueue, IsFullOnceCommittedTransactionsHoldTheTotalLimit) {
  const RuleSet set = rules();
  ReplayQueue q(settings());
  for (int t = 0; t < 2; ++t) {
    EXPECT_FALSE(q.full());
    for (int i = 0; i < 3; ++i) q.add(del("k" + std::to_string(t) + std::to_string(i)), 1);
    q.commit(static_cast<ReplayQueue::Ticket>(t + 1), 500 + static_cast<Lsn>(t), 1000, t0, set);
  }
  EXPECT_TRUE(q.full());
  ReplayQueue::Released r;
  ASSERT_TRUE(q.pop(t0 + milliseconds(5000), r));
  EXPECT_FALSE(q.full());
}

TEST(ReplayQueue, AnAbandonedTransactionLeavesNothingBehind) {
  const RuleSet set = rules();
  ReplayQueue q(settings());
  q.add(del("a"), 1);
  q.abandon();
  q.add(del("b"), 1);
  q.commit(1, 500, 1000, t0, set);
  std::vector<std::int64_t> replayed;
  q.observe(0, 500, t0, replayed);
  ReplayQueue::Released r;
  ASSERT_TRUE(q.pop(t0 + milliseconds(100), r));
  EXPECT_EQ(keys_of(r), std::vector<std::string>{"b"});
}

}  // namespace
}  // namespace walbust
