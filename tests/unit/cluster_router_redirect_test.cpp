// The cluster router against scripted cluster nodes (support/fake_redis.h): routing by
// slot, MOVED, ASK, TRYAGAIN, CLUSTERDOWN, unreachable masters, redirection loops and
// error replies in the middle of a pipeline, each checked by what every node received
// and which keys are left.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "support/fake_redis.h"
#include "walbust/core/events.h"
#include "walbust/io/batch_writer.h"
#include "walbust/io/cluster_router.h"

namespace walbust {
namespace {

using namespace walbust::testing;

// Slots of the keys used below, so that each test reads which master holds what.
//   m1 (0-5460):      b 3300, f 3168, user:3 2648, {u1}.a and {u1}.b 4574
//   m2 (5461-10922):  c 7365, z 8157
//   m3 (10923-16383): a 15495
const std::uint16_t kSlotB = key_hash_slot("b");
const std::uint16_t kSlotU1 = key_hash_slot("{u1}.a");
const std::uint16_t kSlotA = key_hash_slot("a");

long occurrences(const std::vector<std::string>& log, const std::string& line) {
  return std::count(log.begin(), log.end(), line);
}

// Whether every key of an "UNLINK k1 k2 ..." line hashes to one slot.
bool one_slot(const std::string& line) {
  std::set<std::uint16_t> slots;
  for (std::size_t pos = line.find(' '); pos != std::string::npos;) {
    const std::size_t next = line.find(' ', pos + 1);
    slots.insert(key_hash_slot(line.substr(pos + 1, next - pos - 1)));
    pos = next;
  }
  return slots.size() == 1;
}

class ClusterRedirects : public ::testing::Test {
 protected:
  void SetUp() override {
    topology.ranges = {{0, 5460, "m1:7000"}, {5461, 10922, "m2:7001"}, {10923, 16383, "m3:7002"}};
    for (const char* name : {"m1:7000", "m2:7001", "m3:7002"}) {
      nodes[name].name = name;
      nodes[name].cluster = &topology;
    }
    m1().keys = {"b", "f", "user:3", "{u1}.a", "{u1}.b"};
    m2().keys = {"c", "z"};
    m3().keys = {"a"};
  }

  BatchWriter writer(RedisWaitSettings wait = {}, std::vector<ClusterNode> seeds = {{"m1", 7000}}) {
    return BatchWriter(
        std::make_unique<ClusterRouter>(std::move(seeds), RedisEndpoint{}, fake_options(nodes)),
        "unlink", wait);
  }
  static const SlotMap& slot_map(BatchWriter& w) {
    return dynamic_cast<ClusterRouter&>(w.router()).slot_map();
  }
  static BatchResult delete_keys(BatchWriter& w, const std::vector<std::string>& keys) {
    std::vector<Action> actions;
    for (const auto& k : keys) actions.push_back(make(ActionKind::Delete, k));
    return w.apply(pointers(actions));
  }
  static void expect_retry(BatchWriter& w, const std::vector<std::string>& keys,
                           const std::string& reason) {
    try {
      (void)delete_keys(w, keys);
      FAIL() << "the batch must not be confirmed (" << reason << ")";
    } catch (const RedisError& e) {
      EXPECT_EQ(e.kind(), RedisErrorClass::Retry) << e.what();
      EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << e.what();
    }
  }
  void clear_logs() {
    for (auto& [name, n] : nodes) {
      n.log.clear();
      n.writes.clear();
    }
  }

  FakeNode& m1() { return nodes["m1:7000"]; }
  FakeNode& m2() { return nodes["m2:7001"]; }
  FakeNode& m3() { return nodes["m3:7002"]; }
  FakeTopology topology;
  FakeNodes nodes;
};

TEST_F(ClusterRedirects, KeysGoToTheirSlotOwnersInOnePipelinePerMaster) {
  auto w = writer();
  w.connect();
  clear_logs();
  const std::vector<Action> actions = {
      make(ActionKind::Delete, "b"),          make(ActionKind::Delete, "c"),
      make(ActionKind::Delete, "{u1}.a"),     make(ActionKind::Delete, "a"),
      make(ActionKind::Delete, "f"),          make(ActionKind::Delete, "{u1}.b"),
      make(ActionKind::BumpVersion, "z", "1")};
  const BatchResult r = w.apply(pointers(actions));
  // Keys of one slot share a command; keys of different slots never do. Each master's
  // commands arrive in one write (after a PING on a new connection).
  EXPECT_EQ(data_commands(m1()),
            (std::vector<std::string>{"UNLINK b", "UNLINK {u1}.a {u1}.b", "UNLINK f"}));
  EXPECT_EQ(data_commands(m2()), (std::vector<std::string>{"UNLINK c", "SET z 1"}));
  EXPECT_EQ(data_commands(m3()), (std::vector<std::string>{"UNLINK a"}));
  EXPECT_EQ(m1().writes.back(), 3u);
  EXPECT_EQ(m2().writes.back(), 2u);
  EXPECT_EQ(m3().writes.back(), 1u);
  EXPECT_EQ(r.existed, 6);
  EXPECT_EQ(r.commands, 6u);
  EXPECT_EQ(m1().keys, (std::set<std::string>{"user:3"}));
  EXPECT_EQ(m2().keys, (std::set<std::string>{"z"}));
  EXPECT_TRUE(m3().keys.empty());
}

TEST_F(ClusterRedirects, ManyKeysAreGroupedBySlotAndNeverCrossASlot) {
  std::vector<std::string> keys;
  std::set<std::uint16_t> slots;
  for (int i = 0; i < 400; ++i) {
    keys.push_back("{t" + std::to_string(i % 7) + "}:" + std::to_string(i));
    slots.insert(key_hash_slot(keys.back()));
    nodes[topology.owner(key_hash_slot(keys.back()))].keys.insert(keys.back());
  }
  auto w = writer();
  const BatchResult r = delete_keys(w, keys);
  EXPECT_EQ(r.existed, 400);
  // 7 slots of about 57 keys each: one command per slot, whatever its master.
  EXPECT_EQ(r.commands, slots.size());
  for (const char* name : {"m1:7000", "m2:7001", "m3:7002"}) {
    for (const auto& line : data_commands(nodes[name])) {
      EXPECT_TRUE(one_slot(line)) << name << ": " << line;
    }
    for (const auto& k : keys) EXPECT_EQ(nodes[name].keys.count(k), 0u) << k;
  }
}

TEST_F(ClusterRedirects, AMovedSlotReloadsTheMapAndTheKeyIsDeletedOnItsNewOwner) {
  auto w = writer();
  w.connect();
  // The slot of "b" moves to m2 after the map was loaded.
  topology.assign(kSlotB, "m2:7001");
  m1().keys.erase("b");
  m2().keys.insert("b");
  const BatchResult r = delete_keys(w, {"b", "c"});
  EXPECT_EQ(data_commands(m1()), (std::vector<std::string>{"UNLINK b"}));
  EXPECT_EQ(data_commands(m2()), (std::vector<std::string>{"UNLINK c", "UNLINK b"}));
  EXPECT_EQ(occurrences(m1().log, "CLUSTER SLOTS"), 2) << "loaded, then reloaded";
  EXPECT_EQ(r.existed, 2);
  EXPECT_EQ(r.commands, 3u) << "redirected commands count";
  EXPECT_EQ(m2().keys, (std::set<std::string>{"z"}));
  EXPECT_EQ(slot_map(w).master_for(kSlotB)->name(), "m2:7001");

  // Later batches go to the new owner directly.
  clear_logs();
  m2().keys.insert("b");
  (void)delete_keys(w, {"b"});
  EXPECT_TRUE(m1().log.empty());
  EXPECT_EQ(data_commands(m2()), (std::vector<std::string>{"UNLINK b"}));
  EXPECT_EQ(m2().keys, (std::set<std::string>{"z"}));
}

TEST_F(ClusterRedirects, AMovedReplyWinsOverAStaleReloadedMap) {
  FakeTopology m1_view;  // outlives the writer, whose connections point at the nodes
  auto w = writer();
  w.connect();
  // The slot of "a" moves from m3 to m2; m1, asked for the map first, has not heard yet.
  m1_view = topology;
  m1().cluster = &m1_view;
  topology.assign(kSlotA, "m2:7001");
  m3().keys.erase("a");
  m2().keys.insert("a");
  EXPECT_EQ(delete_keys(w, {"a"}).existed, 1);
  EXPECT_EQ(data_commands(m3()), (std::vector<std::string>{"UNLINK a"}));
  EXPECT_EQ(data_commands(m2()), (std::vector<std::string>{"UNLINK a"}));
  EXPECT_EQ(slot_map(w).master_for(kSlotA)->name(), "m2:7001");
}

TEST_F(ClusterRedirects, AFullCommandOfOneSlotStartsAnother) {
  std::vector<std::string> keys;
  for (int i = 0; i < 600; ++i) keys.push_back("{u1}." + std::to_string(i));
  auto w = writer();
  const BatchResult r = delete_keys(w, keys);
  EXPECT_EQ(r.commands, 3u);
  const auto sent = data_commands(m1());
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(std::count(sent[0].begin(), sent[0].end(), ' '), 256);
  EXPECT_EQ(std::count(sent[2].begin(), sent[2].end(), ' '), 600 - 2 * 256);
}

TEST_F(ClusterRedirects, AnAskSendsAskingAndTheCommandToTheImportingNodeForThatKeyOnly) {
  // Slot {u1} migrates from m1 to m2; {u1}.a has moved already, {u1}.b has not.
  topology.migrating[kSlotU1] = "m2:7001";
  m1().keys.erase("{u1}.a");
  m2().keys.insert("{u1}.a");
  auto w = writer();
  const BatchResult r = delete_keys(w, {"{u1}.a", "b"});
  EXPECT_EQ(data_commands(m1()), (std::vector<std::string>{"UNLINK {u1}.a", "UNLINK b"}));
  EXPECT_EQ(data_commands(m2()), (std::vector<std::string>{"ASKING", "UNLINK {u1}.a"}));
  EXPECT_EQ(r.existed, 2);
  EXPECT_EQ(m2().keys, (std::set<std::string>{"c", "z"}));
  EXPECT_EQ(occurrences(m1().log, "CLUSTER SLOTS"), 1) << "an ASK reloads nothing";
  EXPECT_EQ(slot_map(w).master_for(kSlotU1)->name(), "m1:7000");

  // The next key of that slot is asked of its owner again.
  clear_logs();
  (void)delete_keys(w, {"{u1}.b"});
  EXPECT_EQ(data_commands(m1()), (std::vector<std::string>{"UNLINK {u1}.b"}));
  EXPECT_TRUE(m2().log.empty());
  EXPECT_EQ(m1().keys, (std::set<std::string>{"f", "user:3"}));
}

TEST_F(ClusterRedirects, ATryAgainOnAMigratingSlotSettlesKeyByKey) {
  // The two keys of one slot are split between the migration's source and target.
  topology.migrating[kSlotU1] = "m2:7001";
  m1().keys.erase("{u1}.a");
  m2().keys.insert("{u1}.a");
  auto w = writer();
  const BatchResult r = delete_keys(w, {"{u1}.a", "{u1}.b"});
  EXPECT_EQ(data_commands(m1()),
            (std::vector<std::string>{"UNLINK {u1}.a {u1}.b", "UNLINK {u1}.a", "UNLINK {u1}.b"}));
  EXPECT_EQ(data_commands(m2()), (std::vector<std::string>{"ASKING", "UNLINK {u1}.a"}));
  EXPECT_EQ(r.existed, 2);
  EXPECT_EQ(m1().keys, (std::set<std::string>{"b", "f", "user:3"}));
  EXPECT_EQ(m2().keys, (std::set<std::string>{"c", "z"}));
}

TEST_F(ClusterRedirects, ATryAgainThatSettlesIsRetriedWithinTheBatch) {
  auto w = writer();
  m3().try_again = 2;
  const BatchResult r = delete_keys(w, {"a"});
  EXPECT_EQ(data_commands(m3()), (std::vector<std::string>(3, "UNLINK a")));
  EXPECT_EQ(r.existed, 1);
  EXPECT_TRUE(m3().keys.empty());
}

TEST_F(ClusterRedirects, ATryAgainThatDoesNotSettleFailsTheBatchForARetry) {
  auto w = writer();
  m3().try_again = 1000;
  expect_retry(w, {"a"}, "still redirected");
  EXPECT_EQ(occurrences(m3().log, "UNLINK a"), ClusterRouter::kMaxRedirections + 1);
  EXPECT_EQ(m3().keys, (std::set<std::string>{"a"}));
}

TEST_F(ClusterRedirects, ClusterDownFailsTheBatchForARetry) {
  auto w = writer();
  topology.down = true;
  expect_retry(w, {"b", "c"}, "CLUSTERDOWN");
  EXPECT_EQ(m1().keys.count("b"), 1u);
  EXPECT_EQ(m2().keys.count("c"), 1u);
  // The whole batch is resent once the cluster is back.
  topology.down = false;
  EXPECT_EQ(delete_keys(w, {"b", "c"}).existed, 2);
}

TEST_F(ClusterRedirects, AnUnreachableMasterFailsTheBatchAndTheMapIsReloaded) {
  m2().down = true;
  auto w = writer();
  expect_retry(w, {"b", "c"}, "connection refused");
  EXPECT_FALSE(w.connected()) << "the next batch reloads the slot map";
  EXPECT_EQ(data_commands(m1()), (std::vector<std::string>{"UNLINK b"}))
      << "the masters that answered were read to the end";
  m2().down = false;
  EXPECT_EQ(delete_keys(w, {"b", "c"}).existed, 1);
  EXPECT_EQ(occurrences(m1().log, "CLUSTER SLOTS"), 2);
  EXPECT_EQ(m2().keys, (std::set<std::string>{"z"}));
}

TEST_F(ClusterRedirects, AnAskToAnUnreachableNodeFailsTheBatchForARetry) {
  topology.migrating[kSlotU1] = "m2:7001";
  m1().keys.erase("{u1}.a");
  m2().down = true;
  auto w = writer();
  expect_retry(w, {"{u1}.a"}, "connection refused");
  EXPECT_EQ(data_commands(m1()), (std::vector<std::string>{"UNLINK {u1}.a"}));
}

TEST_F(ClusterRedirects, WaitIsAskedOfEveryMasterWrittenToAndOnlyOfThem) {
  auto w = writer(RedisWaitSettings{1, std::chrono::milliseconds(50)});
  m1().replicas = 1;
  m2().replicas = 1;
  (void)delete_keys(w, {"b", "c"});
  EXPECT_EQ(data_commands(m1()).back(), "WAIT 1 50");
  EXPECT_EQ(data_commands(m2()).back(), "WAIT 1 50");
  EXPECT_TRUE(m3().log.empty()) << "m3 holds none of the keys";
  m2().replicas = 0;
  expect_retry(w, {"b", "c"}, "0 of 1 replicas");
}

TEST_F(ClusterRedirects, ASeedThatServesNoSlotsIsSkipped) {
  FakeTopology empty;
  nodes["m0:7009"].cluster = &empty;
  auto w = writer({}, {{"m0", 7009}, {"m1", 7000}});
  w.connect();
  EXPECT_EQ(occurrences(nodes["m0:7009"].log, "CLUSTER SLOTS"), 1);
  EXPECT_EQ(slot_map(w).masters().size(), 3u);
  EXPECT_EQ(delete_keys(w, {"b", "c", "a"}).existed, 3);
}

TEST_F(ClusterRedirects, NoSeedAnsweringIsRetriedAndAStandaloneSeedIsFatal) {
  m1().down = true;
  auto w = writer();
  try {
    w.connect();
    FAIL() << "no node gave a slot map";
  } catch (const RedisError& e) {
    EXPECT_EQ(e.kind(), RedisErrorClass::Retry) << e.what();
    EXPECT_NE(std::string(e.what()).find("no cluster node returned the slot map"),
              std::string::npos)
        << e.what();
  }
  m1().down = false;
  m1().cluster = nullptr;
  try {
    w.connect();
    FAIL() << "a standalone server is not a cluster";
  } catch (const RedisError& e) {
    EXPECT_TRUE(e.fatal()) << e.what();
    EXPECT_NE(std::string(e.what()).find("not in cluster mode"), std::string::npos) << e.what();
  }
}

TEST_F(ClusterRedirects, APatternIsScannedOnEveryMasterAndItsKeysDeletedByTheirOwners) {
  std::vector<std::string> found;
  for (int i = 0; i < 30; ++i) {
    found.push_back("p:" + std::to_string(i));
    nodes[topology.owner(key_hash_slot(found.back()))].keys.insert(found.back());
  }
  auto w = writer();
  const std::vector<Action> actions = {make(ActionKind::Delete, "b"),
                                       make(ActionKind::DeletePattern, "p:*")};
  const BatchResult r = w.apply(pointers(actions));
  EXPECT_EQ(r.patterns, 1u);
  EXPECT_EQ(r.existed, 31);
  EXPECT_EQ(data_commands(m1()).front(), "UNLINK b") << "what stands before the pattern goes first";
  for (const char* name : {"m1:7000", "m2:7001", "m3:7002"}) {
    EXPECT_EQ(occurrences(nodes[name].log, "SCAN 0 MATCH p:* COUNT 1000"), 1) << name;
    for (const auto& k : found) EXPECT_EQ(nodes[name].keys.count(k), 0u) << name << " " << k;
  }
}

TEST_F(ClusterRedirects, APatternScanDuringAMigrationIsRetried) {
  topology.migrating[kSlotU1] = "m2:7001";
  auto w = writer();
  const std::vector<Action> actions = {make(ActionKind::DeletePattern, "{u1}.*")};
  try {
    (void)w.apply(pointers(actions));
    FAIL() << "a scan that may have missed a moving key must not be confirmed";
  } catch (const RedisError& e) {
    EXPECT_EQ(e.kind(), RedisErrorClass::Retry) << e.what();
    EXPECT_NE(std::string(e.what()).find("slots kept moving"), std::string::npos) << e.what();
  }
  EXPECT_EQ(occurrences(m1().log, "SCAN 0 MATCH {u1}.* COUNT 1000"), BatchWriter::kMaxScanPasses);
  // The keys found were deleted, but only a stable scan confirms the batch.
  EXPECT_EQ(m1().keys.count("{u1}.a") + m1().keys.count("{u1}.b"), 0u);
  topology.migrating.clear();
  EXPECT_EQ(w.apply(pointers(actions)).patterns, 1u);
}

Action publish(PublishKind kind, const std::string& name, std::vector<std::string> keys) {
  auto event = std::make_shared<PublishEvent>();
  event->destination = PublishDestination{kind, name, 100};
  event->lsn = 0x10;
  event->xid = 7;
  event->keys = std::move(keys);
  Action a = make(ActionKind::Publish, name);
  a.event = std::move(event);
  return a;
}

TEST_F(ClusterRedirects, EventsFollowEveryDeleteAndGoToTheirSlotOwners) {
  auto w = writer();
  w.connect();
  // The stream's slot moves to m2 after the map was loaded: its XADD follows the MOVED.
  topology.assign(kSlotU1, "m2:7001");
  m3().subscribers = 2;  // the channel "ch" hashes to m3
  const std::vector<Action> actions = {
      make(ActionKind::Delete, "b"), publish(PublishKind::Channel, "ch", {"b"}),
      make(ActionKind::Delete, "c"), publish(PublishKind::Stream, "{u1}.s", {"c"})};
  const BatchResult r = w.apply(pointers(actions));
  const auto on_m1 = data_commands(m1());
  const auto on_m2 = data_commands(m2());
  const auto on_m3 = data_commands(m3());
  ASSERT_EQ(on_m1.size(), 2u);
  EXPECT_EQ(on_m1[0], "UNLINK b");
  EXPECT_EQ(on_m1[1].rfind("XADD {u1}.s MAXLEN ~ 100 * lsn 0/10 xid 7 keys", 0), 0u) << on_m1[1];
  ASSERT_EQ(on_m2.size(), 2u);
  EXPECT_EQ(on_m2[0], "UNLINK c");
  EXPECT_EQ(on_m2[1], on_m1[1]);
  ASSERT_EQ(on_m3.size(), 1u);
  EXPECT_EQ(on_m3[0].rfind("PUBLISH ch {", 0), 0u) << on_m3[0];
  // The events are a round of their own, after every delete's reply was read.
  EXPECT_EQ(m1().writes.back(), 1u);
  EXPECT_EQ(m2().writes.back(), 1u);
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].subscribers, 2);
  EXPECT_EQ(r.events[1].subscribers, -1);
  EXPECT_EQ(m2().keys.count("{u1}.s"), 1u);
}

TEST_F(ClusterRedirects, MoreRedirectionsThanTheLimitFailTheBatchForARetry) {
  FakeTopology m2_view;
  auto w = writer();
  w.connect();
  // A failover in progress: m1 believes m2 owns the slot of "b", m2 believes m1 does.
  m2_view = topology;
  m2().cluster = &m2_view;
  topology.assign(kSlotB, "m2:7001");
  expect_retry(w, {"b"}, "still redirected");
  const long sent = occurrences(m1().log, "UNLINK b") + occurrences(m2().log, "UNLINK b");
  EXPECT_EQ(sent, ClusterRouter::kMaxRedirections + 1);
  EXPECT_EQ(m1().keys.count("b"), 1u);
}

TEST_F(ClusterRedirects, AnOomInTheMiddleOfAPipelineIsRetriedAndConnectionsStayInSync) {
  m1().key_errors["f"] = "OOM command not allowed when used memory > 'maxmemory'.";
  auto w = writer();
  expect_retry(w, {"b", "f", "user:3", "c", "a"}, "OOM");
  EXPECT_EQ(data_commands(m1()),
            (std::vector<std::string>{"UNLINK b", "UNLINK f", "UNLINK user:3"}));
  EXPECT_EQ(m1().keys, (std::set<std::string>{"f", "{u1}.a", "{u1}.b"}));
  EXPECT_EQ(m2().keys, (std::set<std::string>{"z"}));
  EXPECT_TRUE(m3().keys.empty());
  // Every reply was read: the next commands get their own replies.
  m1().key_errors.clear();
  EXPECT_EQ(w.exists({"f", "b", "z", "c"}), (std::vector<bool>{true, false, true, false}));
  EXPECT_EQ(delete_keys(w, {"b", "f", "user:3", "c", "a"}).existed, 1);
  EXPECT_EQ(m1().keys, (std::set<std::string>{"{u1}.a", "{u1}.b"}));
}

TEST_F(ClusterRedirects, ANopermInTheMiddleOfAPipelineIsFatalAndConnectionsStayInSync) {
  m2().keys.insert("user:2");
  m2().key_errors["user:2"] = "NOPERM this user has no permissions to access one of the keys";
  auto w = writer();
  try {
    (void)delete_keys(w, {"b", "c", "user:2", "z", "a"});
    FAIL() << "NOPERM must stop the daemon";
  } catch (const RedisError& e) {
    EXPECT_TRUE(e.fatal()) << e.what();
    EXPECT_NE(std::string(e.what()).find("m2:7001"), std::string::npos) << e.what();
  }
  EXPECT_EQ(data_commands(m2()),
            (std::vector<std::string>{"UNLINK c", "UNLINK user:2", "UNLINK z"}));
  EXPECT_EQ(m2().keys, (std::set<std::string>{"user:2"}));
  m2().key_errors.clear();
  EXPECT_EQ(w.exists({"user:2", "a", "b"}), (std::vector<bool>{true, false, false}));
  EXPECT_EQ(delete_keys(w, {"user:2"}).existed, 1);
}

}  // namespace
}  // namespace walbust
