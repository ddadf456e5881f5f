// The ordering argument of the batch writer, checked as a property on random batches
// instead of argued in a comment: whatever the mix of deletes, repeated keys, version
// bumps and patterns, and however the actions are cut into batches, Redis ends in the
// state that applying every action one by one, in commit order, would leave. That is what
// "deduplicated", "a SET stays after the deletes before it" and "a pattern is scanned
// where it stands" promise together. Checked on one server and on a three-master cluster
// (support/fake_redis.h), many seeds each.
#include <gtest/gtest.h>

#include <random>

#include "support/fake_redis.h"
#include "walbust/io/batch_writer.h"
#include "walbust/io/cluster_router.h"

namespace walbust {
namespace {

using namespace walbust::testing;

// A small key universe, so keys repeat, SETs and deletes hit the same keys and patterns
// match keys that earlier actions of the same batch created or deleted.
const std::vector<std::string> kKeys = {"a", "b", "p:1", "p:2", "p:v", "q:1", "q:v", "{u}.x"};
const std::vector<std::string> kPatterns = {"p:*", "q:*", "*v"};

std::vector<Action> random_actions(std::mt19937& rng, std::size_t n) {
  std::vector<Action> out;
  for (std::size_t i = 0; i < n; ++i) {
    const auto roll = rng() % 10;
    if (roll < 6) {
      out.push_back(make(ActionKind::Delete, kKeys[rng() % kKeys.size()]));
    } else if (roll < 8) {
      out.push_back(
          make(ActionKind::BumpVersion, kKeys[rng() % kKeys.size()], std::to_string(rng() % 100)));
    } else {
      out.push_back(make(ActionKind::DeletePattern, kPatterns[rng() % kPatterns.size()]));
    }
  }
  return out;
}

std::set<std::string> random_keyspace(std::mt19937& rng) {
  std::set<std::string> keys;
  for (const auto& k : kKeys) {
    if (rng() % 2 == 0) keys.insert(k);
  }
  return keys;
}

// The reference: every action on its own, in order.
std::set<std::string> one_by_one(std::set<std::string> keys, const std::vector<Action>& actions) {
  for (const auto& a : actions) {
    switch (a.kind) {
      case ActionKind::Delete:
        keys.erase(a.key);
        break;
      case ActionKind::BumpVersion:
        keys.insert(a.key);
        break;
      case ActionKind::DeletePattern:
        std::erase_if(
            keys, [&](const std::string& k) { return fnmatch(a.key.c_str(), k.c_str(), 0) == 0; });
        break;
      default:
        break;
    }
  }
  return keys;
}

// Applies `actions` in batches of random sizes, as a sink takes whatever accumulated.
void apply_in_random_batches(BatchWriter& w, const std::vector<Action>& actions,
                             std::mt19937& rng) {
  std::size_t at = 0;
  while (at < actions.size()) {
    const std::size_t size = 1 + rng() % std::min<std::size_t>(actions.size() - at, 12);
    std::vector<const Action*> batch;
    for (std::size_t i = at; i < at + size; ++i) batch.push_back(&actions[i]);
    (void)w.apply(batch);
    at += size;
  }
}

std::string describe(const std::vector<Action>& actions) {
  std::string out;
  for (const auto& a : actions) {
    out += a.kind == ActionKind::Delete        ? " DEL "
           : a.kind == ActionKind::BumpVersion ? " SET "
                                               : " PATTERN ";
    out += a.key;
  }
  return out;
}

TEST(BatchOrder, OneServerEndsAsIfEveryActionRanAloneInCommitOrder) {
  for (unsigned seed = 1; seed <= 400; ++seed) {
    std::mt19937 rng(seed);
    FakeNodes nodes;
    FakeNode& node = nodes["r:6379"];
    node.keys = random_keyspace(rng);
    const auto before = node.keys;
    const auto actions = random_actions(rng, 1 + rng() % 40);
    BatchWriter w(std::make_unique<SingleRouter>(endpoint("r", 6379), fake_options(nodes)),
                  "unlink", {});
    apply_in_random_batches(w, actions, rng);
    ASSERT_EQ(node.keys, one_by_one(before, actions))
        << "seed " << seed << ", actions:" << describe(actions);
  }
}

TEST(BatchOrder, AClusterEndsAsIfEveryActionRanAloneInCommitOrder) {
  for (unsigned seed = 1; seed <= 200; ++seed) {
    std::mt19937 rng(seed);
    FakeTopology topology;
    topology.ranges = {{0, 5460, "m1:7000"}, {5461, 10922, "m2:7001"}, {10923, 16383, "m3:7002"}};
    FakeNodes nodes;
    for (const char* name : {"m1:7000", "m2:7001", "m3:7002"}) {
      nodes[name].name = name;
      nodes[name].cluster = &topology;
    }
    const auto before = random_keyspace(rng);
    for (const auto& k : before) nodes[topology.owner(key_hash_slot(k))].keys.insert(k);
    const auto actions = random_actions(rng, 1 + rng() % 40);
    BatchWriter w(std::make_unique<ClusterRouter>(std::vector<ClusterNode>{{"m1", 7000}},
                                                  RedisEndpoint{}, fake_options(nodes)),
                  "unlink", {});
    apply_in_random_batches(w, actions, rng);
    std::set<std::string> after;
    for (const auto& [name, n] : nodes) after.insert(n.keys.begin(), n.keys.end());
    ASSERT_EQ(after, one_by_one(before, actions))
        << "seed " << seed << ", actions:" << describe(actions);
  }
}

}  // namespace
}  // namespace walbust
