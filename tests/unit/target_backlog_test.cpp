#include "walbust/core/target_backlog.h"

#include <gtest/gtest.h>

namespace walbust {
namespace {

std::vector<QueueItem> actions(std::size_t n, std::size_t first = 0) {
  std::vector<QueueItem> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i].action.key = "k" + std::to_string(first + i);
  return v;
}

QueueItem commit(std::uint64_t ticket) {
  QueueItem item;
  item.kind = QueueItem::Kind::Commit;
  item.ticket = ticket;
  return item;
}

TEST(TargetBacklog, TakeStopsAtMaxActionsButKeepsTheCommitsBetween) {
  TargetBacklog b(100);
  auto items = actions(3);
  items.push_back(commit(1));
  auto more = actions(3, 3);
  items.insert(items.end(), more.begin(), more.end());
  b.push(items);
  EXPECT_TRUE(items.empty());
  std::vector<QueueItem> out;
  EXPECT_EQ(b.take(out, 3), 4U);  // three actions, then the commit before the fourth
  ASSERT_EQ(out.size(), 4U);
  EXPECT_EQ(out.back().kind, QueueItem::Kind::Commit);
  out.clear();
  EXPECT_EQ(b.take(out, 10), 3U);
  EXPECT_TRUE(b.empty());
}

TEST(TargetBacklog, IsFullAtCapacityAndAcceptsMoreAnyway) {
  TargetBacklog b(4);
  auto first = actions(3);
  b.push(first);
  EXPECT_FALSE(b.full());
  auto big = actions(10, 3);
  b.push(big);  // the stream checks full() before it hands over; a push never drops
  EXPECT_TRUE(b.full());
  EXPECT_EQ(b.size(), 13U);
}

TEST(TargetBacklog, KeepsOrderAcrossManyPushesAndTakes) {
  TargetBacklog b(64);
  std::size_t next_in = 0;
  std::size_t next_out = 0;
  std::vector<QueueItem> out;
  for (int round = 0; round < 500; ++round) {
    auto chunk = actions(7, next_in);
    next_in += 7;
    b.push(chunk);
    out.clear();
    (void)b.take(out, 5);
    for (const auto& item : out) {
      ASSERT_EQ(item.action.key, "k" + std::to_string(next_out));
      ++next_out;
    }
  }
  out.clear();
  (void)b.take(out, 1U << 30);
  for (const auto& item : out) ASSERT_EQ(item.action.key, "k" + std::to_string(next_out++));
  EXPECT_EQ(next_out, next_in);
}

}  // namespace
}  // namespace walbust
