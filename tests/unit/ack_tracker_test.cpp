#include "walbust/core/ack_tracker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <random>

namespace walbust {
namespace {

TEST(AckTracker, StartsAtTheSlotPosition) {
  AckTracker t;
  EXPECT_EQ(t.flush_lsn(), 0u);
  t.start_from(100);
  EXPECT_EQ(t.flush_lsn(), 100u);
  t.start_from(50);  // never backwards
  EXPECT_EQ(t.flush_lsn(), 100u);
  EXPECT_TRUE(t.idle());
}

TEST(AckTracker, CommitIsReportedOnlyAfterConfirmation) {
  AckTracker t;
  t.start_from(100);
  t.begin();
  EXPECT_TRUE(t.in_transaction());
  const auto ticket = t.commit(200);
  EXPECT_FALSE(t.in_transaction());
  EXPECT_EQ(t.flush_lsn(), 100u);
  EXPECT_FALSE(t.idle());
  EXPECT_EQ(t.pending(), 1u);
  t.confirm(0, ticket);
  EXPECT_EQ(t.flush_lsn(), 200u);
  EXPECT_TRUE(t.idle());
  EXPECT_EQ(t.pending(), 0u);
}

TEST(AckTracker, ConfirmingALaterTicketCoversEarlierOnes) {
  AckTracker t;
  t.begin();
  const auto a = t.commit(200);
  t.begin();
  const auto b = t.commit(300);
  t.begin();
  const auto c = t.commit(400);
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  t.confirm(0, b);
  EXPECT_EQ(t.flush_lsn(), 300u);
  t.confirm(0, a);  // stale confirmation changes nothing
  EXPECT_EQ(t.flush_lsn(), 300u);
  t.confirm(0, c);
  EXPECT_EQ(t.flush_lsn(), 400u);
}

TEST(AckTracker, KeepaliveWhileIdleIsReportedAtOnce) {
  AckTracker t;
  t.start_from(100);
  t.keepalive(500);
  EXPECT_EQ(t.flush_lsn(), 500u);
  t.keepalive(400);  // older position: ignored
  EXPECT_EQ(t.flush_lsn(), 500u);
}

TEST(AckTracker, KeepaliveInsideATransactionIsIgnored) {
  AckTracker t;
  t.start_from(100);
  t.begin();
  t.keepalive(500);
  const auto ticket = t.commit(600);
  t.confirm(0, ticket);
  EXPECT_EQ(t.flush_lsn(), 600u);
  // And the ignored keepalive left nothing behind that could move the position later.
  t.keepalive(550);
  EXPECT_EQ(t.flush_lsn(), 600u);
}

TEST(AckTracker, KeepaliveWaitsForEarlierTransactions) {
  AckTracker t;
  t.start_from(100);
  t.begin();
  const auto ticket = t.commit(200);
  t.keepalive(900);  // the server skipped unpublished transactions up to 900
  EXPECT_EQ(t.flush_lsn(), 100u);
  t.confirm(0, ticket);
  EXPECT_EQ(t.flush_lsn(), 900u);
}

TEST(AckTracker, KeepaliveDoesNotWaitForLaterTransactions) {
  AckTracker t;
  t.begin();
  const auto first = t.commit(200);
  t.keepalive(300);
  t.begin();
  const auto second = t.commit(400);
  t.confirm(0, first);
  EXPECT_EQ(t.flush_lsn(), 300u);  // keepalive covered by `first` alone
  t.confirm(0, second);
  EXPECT_EQ(t.flush_lsn(), 400u);
}

TEST(AckTracker, RepeatedKeepalivesDoNotGrowState) {
  AckTracker t;
  t.begin();
  const auto ticket = t.commit(200);
  for (Lsn l = 300; l < 300 + 100000; ++l) t.keepalive(l);
  EXPECT_EQ(t.pending(), 1u);
  t.confirm(0, ticket);
  EXPECT_EQ(t.flush_lsn(), 300u + 100000 - 1);
}

TEST(AckTracker, AbandonedTransactionIsNotReported) {
  AckTracker t;
  t.start_from(100);
  t.begin();
  t.abandon_transaction();  // connection lost mid-transaction
  EXPECT_FALSE(t.in_transaction());
  EXPECT_TRUE(t.idle());
  EXPECT_EQ(t.flush_lsn(), 100u);
  t.keepalive(150);  // after reconnecting, the stream starts over
  EXPECT_EQ(t.flush_lsn(), 150u);
}

TEST(AckTracker, EveryTargetMustConfirm) {
  AckTracker t(2);
  t.begin();
  const auto ticket = t.commit(200);
  t.confirm(0, ticket);
  EXPECT_EQ(t.flush_lsn(), 0u);
  EXPECT_FALSE(t.idle());
  t.confirm(1, ticket);
  EXPECT_EQ(t.flush_lsn(), 200u);
  EXPECT_THROW(t.confirm(2, ticket), std::out_of_range);
}

TEST(AckTracker, SlowestTargetGates) {
  AckTracker t(3);
  std::vector<AckTracker::Ticket> tickets;
  for (Lsn l = 1; l <= 10; ++l) {
    t.begin();
    tickets.push_back(t.commit(l * 100));
  }
  t.confirm(0, tickets[9]);
  t.confirm(1, tickets[4]);
  t.confirm(2, tickets[7]);
  EXPECT_EQ(t.flush_lsn(), 500u);
  t.confirm(1, tickets[9]);
  EXPECT_EQ(t.flush_lsn(), 800u);
}

TEST(AckTracker, CommitLsnNeverMovesTheReportBackwards) {
  AckTracker t;
  t.start_from(1000);
  t.begin();
  const auto ticket = t.commit(500);  // resent transaction older than the start point
  t.confirm(0, ticket);
  EXPECT_EQ(t.flush_lsn(), 1000u);
}

// Model check: random interleavings of source and sink events. The reported position must
// never pass a commit whose ticket is unconfirmed, and never move backwards.
TEST(AckTracker, RandomInterleavingsNeverReportUnconfirmedWork) {
  for (unsigned seed = 1; seed <= 200; ++seed) {
    std::mt19937 rng(seed);
    AckTracker t(2);
    Lsn lsn = 1000;
    std::vector<std::pair<AckTracker::Ticket, Lsn>> commits;
    AckTracker::Ticket confirmed[2] = {0, 0};
    Lsn last_report = 0;
    bool open = false;
    for (int step = 0; step < 500; ++step) {
      switch (rng() % 5) {
        case 0:
          if (!open) {
            t.begin();
            open = true;
          }
          break;
        case 1:
          if (open) {
            lsn += 1 + rng() % 50;
            commits.emplace_back(t.commit(lsn), lsn);
            open = false;
          }
          break;
        case 2:
          lsn += rng() % 30;
          t.keepalive(lsn);
          break;
        default: {
          const std::size_t target = rng() % 2;
          if (!commits.empty()) {
            const auto& c = commits[rng() % commits.size()];
            confirmed[target] = std::max(confirmed[target], c.first);
            t.confirm(target, c.first);
          }
        }
      }
      const Lsn report = t.flush_lsn();
      ASSERT_GE(report, last_report) << "seed " << seed;
      last_report = report;
      const auto done = std::min(confirmed[0], confirmed[1]);
      for (const auto& [ticket, commit_lsn] : commits) {
        if (ticket > done) {
          ASSERT_LT(report, commit_lsn)
              << "seed " << seed << ": reported past unconfirmed ticket " << ticket;
        }
      }
    }
  }
}

// With read replicas a transaction waits for its repeated deletes as well.

TEST(AckTrackerWithReplicas, ACommitWaitsForTheRepeatedDeletesOfEveryTarget) {
  AckTracker t(2, /*after_replay=*/true);
  t.start_from(100);
  t.begin();
  const auto ticket = t.commit(200);
  t.confirm(0, ticket);
  t.confirm(1, ticket);
  EXPECT_EQ(t.flush_lsn(), 100u);
  EXPECT_FALSE(t.idle());
  t.confirm_replayed(0, ticket);
  EXPECT_EQ(t.flush_lsn(), 100u);
  t.confirm_replayed(1, ticket);
  EXPECT_EQ(t.flush_lsn(), 200u);
  EXPECT_TRUE(t.idle());
}

TEST(AckTrackerWithReplicas, RepeatedDeletesConfirmedFirstStillWaitForTheFirstDeletes) {
  AckTracker t(1, true);
  t.begin();
  const auto ticket = t.commit(200);
  t.confirm_replayed(0, ticket);
  EXPECT_EQ(t.flush_lsn(), 0u);
  t.confirm(0, ticket);
  EXPECT_EQ(t.flush_lsn(), 200u);
}

TEST(AckTrackerWithReplicas, AKeepaliveAfterAWaitingTransactionWaitsForItsRepeat) {
  AckTracker t(1, true);
  t.begin();
  const auto ticket = t.commit(200);
  t.keepalive(300);
  t.confirm(0, ticket);
  EXPECT_EQ(t.flush_lsn(), 0u);
  t.confirm_replayed(0, ticket);
  EXPECT_EQ(t.flush_lsn(), 300u);
}

TEST(AckTrackerWithReplicas, OnlyTheTransactionsWhoseRepeatIsConfirmedAreReported) {
  AckTracker t(1, true);
  t.begin();
  const auto a = t.commit(200);
  t.begin();
  const auto b = t.commit(300);
  t.confirm(0, b);
  t.confirm_replayed(0, a);
  EXPECT_EQ(t.flush_lsn(), 200u);
  EXPECT_EQ(t.pending(), 1u);
  t.confirm_replayed(0, b);
  EXPECT_EQ(t.flush_lsn(), 300u);
  EXPECT_EQ(t.pending(), 0u);
}

TEST(AckTrackerWithReplicas, ConfirmingARepeatWithoutReplicasIsAnError) {
  AckTracker t(1);
  EXPECT_THROW(t.confirm_replayed(0, 1), std::out_of_range);
  AckTracker r(1, true);
  EXPECT_THROW(r.confirm_replayed(1, 1), std::out_of_range);
}

TEST(AckTrackerWithReplicas, RandomConfirmationOrdersNeverReportAnUnrepeatedTransaction) {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    AckTracker t(2, true);
    std::vector<std::pair<AckTracker::Ticket, Lsn>> commits;
    for (int i = 0; i < 20; ++i) {
      t.begin();
      const Lsn lsn = 100 + 10 * static_cast<Lsn>(i);
      commits.emplace_back(t.commit(lsn), lsn);
    }
    // Each of the four columns confirms increasing tickets at its own pace.
    std::array<AckTracker::Ticket, 4> done{};
    while (std::any_of(done.begin(), done.end(), [](auto d) { return d < 20; })) {
      const std::size_t col = rng() % 4;
      if (done[col] >= 20) continue;
      done[col] = std::min<AckTracker::Ticket>(20, done[col] + 1 + rng() % 3);
      if (col < 2) {
        t.confirm(col, done[col]);
      } else {
        t.confirm_replayed(col - 2, done[col]);
      }
      const auto safe = *std::min_element(done.begin(), done.end());
      const Lsn expected = safe == 0 ? 0 : commits[safe - 1].second;
      ASSERT_EQ(t.flush_lsn(), expected);
    }
  }
}

}  // namespace
}  // namespace walbust
