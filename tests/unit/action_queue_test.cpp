#include "walbust/core/action_queue.h"

#include <gtest/gtest.h>

#include <thread>

namespace walbust {
namespace {

using namespace std::chrono_literals;

std::vector<QueueItem> actions(std::size_t n) {
  std::vector<QueueItem> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i].action.key = "k" + std::to_string(i);
  return v;
}

QueueItem commit(std::uint64_t ticket) {
  QueueItem item;
  item.kind = QueueItem::Kind::Commit;
  item.ticket = ticket;
  return item;
}

TEST(ActionQueue, PopTakesAtMostMaxActionsButAllCommitsBetween) {
  ActionQueue q(100);
  auto items = actions(3);
  items.push_back(commit(1));
  auto more = actions(3);
  items.insert(items.end(), more.begin(), more.end());
  ASSERT_TRUE(q.push(items, ActionQueue::Clock::now()));
  EXPECT_TRUE(items.empty());
  std::vector<QueueItem> out;
  ASSERT_EQ(q.pop(out, 3, ActionQueue::Clock::now()), ActionQueue::PopResult::Items);
  ASSERT_EQ(out.size(), 4u);  // three actions and the commit right after them
  EXPECT_EQ(out[3].kind, QueueItem::Kind::Commit);
  out.clear();
  ASSERT_EQ(q.pop(out, 10, ActionQueue::Clock::now()), ActionQueue::PopResult::Items);
  EXPECT_EQ(out.size(), 3u);
}

TEST(ActionQueue, PushWaitsForRoomAndTimesOut) {
  ActionQueue q(4);
  auto first = actions(4);
  ASSERT_TRUE(q.push(first, ActionQueue::Clock::now()));
  auto second = actions(2);
  EXPECT_FALSE(q.push(second, ActionQueue::Clock::now() + 20ms));
  EXPECT_EQ(second.size(), 2u);  // nothing moved on timeout
  EXPECT_EQ(q.size(), 4u);
}

TEST(ActionQueue, EmptyQueueAcceptsAnOversizedChunk) {
  ActionQueue q(2);
  auto big = actions(10);
  EXPECT_TRUE(q.push(big, ActionQueue::Clock::now()));
  EXPECT_EQ(q.size(), 10u);
}

TEST(ActionQueue, PopTimesOutWhenEmptyAndReportsClosedAfterDrain) {
  ActionQueue q(10);
  std::vector<QueueItem> out;
  EXPECT_EQ(q.pop(out, 10, ActionQueue::Clock::now() + 5ms), ActionQueue::PopResult::Timeout);
  auto items = actions(1);
  ASSERT_TRUE(q.push(items, ActionQueue::Clock::now()));
  q.close();
  EXPECT_EQ(q.pop(out, 10, ActionQueue::Clock::now()), ActionQueue::PopResult::Items);
  EXPECT_EQ(q.pop(out, 10, ActionQueue::Clock::now() + 1s), ActionQueue::PopResult::Closed);
}

TEST(ActionQueue, WaitLeavesItemsForTheNextPop) {
  ActionQueue q(10);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.wait(ActionQueue::Clock::now() + 5ms), ActionQueue::PopResult::Timeout);
  std::thread producer([&] {
    std::this_thread::sleep_for(10ms);
    auto items = actions(2);
    ASSERT_TRUE(q.push(items, ActionQueue::Clock::now()));
  });
  EXPECT_EQ(q.wait(ActionQueue::Clock::now() + 5s), ActionQueue::PopResult::Items);
  producer.join();
  EXPECT_EQ(q.size(), 2u);  // waiting took nothing
  EXPECT_FALSE(q.empty());
  std::vector<QueueItem> out;
  ASSERT_EQ(q.pop(out, 10, ActionQueue::Clock::now()), ActionQueue::PopResult::Items);
  EXPECT_EQ(out.size(), 2u);
  q.close();
  EXPECT_EQ(q.wait(ActionQueue::Clock::now() + 1s), ActionQueue::PopResult::Closed);
}

TEST(ActionQueue, ProducerAndConsumerKeepOrderUnderBackpressure) {
  ActionQueue q(64);
  constexpr int kTotal = 20000;
  std::thread producer([&] {
    std::vector<QueueItem> chunk;
    for (int i = 0; i < kTotal; ++i) {
      QueueItem item;
      item.action.key = std::to_string(i);
      chunk.push_back(std::move(item));
      if (chunk.size() == 50) {
        while (!q.push(chunk, ActionQueue::Clock::now() + 10ms)) {
        }
      }
    }
    while (!q.push(chunk, ActionQueue::Clock::now() + 10ms)) {
    }
    q.close();
  });
  int expected = 0;
  std::size_t max_seen = 0;
  std::vector<QueueItem> out;
  while (true) {
    out.clear();
    const auto r = q.pop(out, 30, ActionQueue::Clock::now() + 1s);
    if (r == ActionQueue::PopResult::Closed) break;
    max_seen = std::max(max_seen, q.size());
    for (const auto& item : out) ASSERT_EQ(item.action.key, std::to_string(expected++));
  }
  producer.join();
  EXPECT_EQ(expected, kTotal);
  EXPECT_LE(max_seen, 64u);
}

}  // namespace
}  // namespace walbust
