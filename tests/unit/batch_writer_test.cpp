// The batch writer and the routers against scripted servers (support/fake_redis.h), so
// the batch semantics (deduplication, ordering, patterns where they stand, DEL/UNLINK,
// WAIT) and sentinel discovery are tested without servers.
#include "walbust/io/batch_writer.h"

#include <gtest/gtest.h>

#include "support/fake_redis.h"
#include "walbust/io/sentinel_router.h"

namespace walbust {
namespace {

using namespace walbust::testing;

class SingleServer : public ::testing::Test {
 protected:
  BatchWriter writer(const std::string& verb = "unlink", RedisWaitSettings wait = {}) {
    return BatchWriter(std::make_unique<SingleRouter>(endpoint("r", 6379), fake_options(nodes)),
                       verb, wait);
  }
  FakeNode& node() { return nodes["r:6379"]; }
  FakeNodes nodes;
};

TEST_F(SingleServer, DeletesAreDeduplicatedAndASetKeepsItsPlace) {
  node().keys = {"a", "b", "c"};
  auto w = writer();
  const std::vector<Action> actions = {
      make(ActionKind::Delete, "a"), make(ActionKind::Delete, "b"),
      make(ActionKind::Delete, "a"), make(ActionKind::BumpVersion, "v", "42"),
      make(ActionKind::Delete, "c"), make(ActionKind::Delete, "b")};
  const BatchResult r = w.apply(pointers(actions));
  EXPECT_EQ(data_commands(node()),
            (std::vector<std::string>{"UNLINK a b", "SET v 42", "UNLINK c"}));
  EXPECT_EQ(r.keys, 3u);
  EXPECT_EQ(r.existed, 3);
  EXPECT_EQ(r.commands, 3u);
}

TEST_F(SingleServer, TheDeleteCommandIsConfigurable) {
  auto w = writer("del");
  const std::vector<Action> actions = {make(ActionKind::Delete, "a")};
  (void)w.apply(pointers(actions));
  EXPECT_EQ(data_commands(node()), (std::vector<std::string>{"DEL a"}));
}

TEST_F(SingleServer, LongBatchesAreSplitIntoCommandsOf256Keys) {
  auto w = writer();
  std::vector<Action> actions;
  for (int i = 0; i < 600; ++i)
    actions.push_back(make(ActionKind::Delete, "k" + std::to_string(i)));
  const BatchResult r = w.apply(pointers(actions));
  EXPECT_EQ(r.commands, 3u);
  EXPECT_EQ(r.keys, 600u);
}

TEST_F(SingleServer, APatternIsScannedWhereItStandsAndOncePerBatch) {
  node().keys = {"a", "p:1", "p:2", "q"};
  auto w = writer();
  const std::vector<Action> actions = {
      make(ActionKind::Delete, "a"), make(ActionKind::DeletePattern, "p:*"),
      make(ActionKind::Delete, "q"), make(ActionKind::DeletePattern, "p:*")};
  const BatchResult r = w.apply(pointers(actions));
  EXPECT_EQ(data_commands(node()),
            (std::vector<std::string>{"UNLINK a", "SCAN 0 MATCH p:* COUNT 1000", "UNLINK p:1 p:2",
                                      "UNLINK q"}));
  EXPECT_EQ(r.patterns, 1u);
  EXPECT_EQ(r.existed, 4);
  EXPECT_TRUE(node().keys.empty());
}

TEST_F(SingleServer, ErrorRepliesAreClassified) {
  auto w = writer();
  const std::vector<Action> actions = {make(ActionKind::Delete, "a")};
  node().error = "READONLY You can't write against a read only replica.";
  try {
    (void)w.apply(pointers(actions));
    FAIL() << "READONLY must throw";
  } catch (const RedisError& e) {
    EXPECT_EQ(e.kind(), RedisErrorClass::Retry) << e.what();
  }
  node().error = "NOPERM this user has no permissions to run the 'unlink' command";
  try {
    (void)w.apply(pointers(actions));
    FAIL() << "NOPERM must throw";
  } catch (const RedisError& e) {
    EXPECT_TRUE(e.fatal()) << e.what();
  }
}

TEST_F(SingleServer, WaitConfirmsABatchOnlyWithEnoughReplicas) {
  auto w = writer("unlink", RedisWaitSettings{1, std::chrono::milliseconds(50)});
  const std::vector<Action> actions = {make(ActionKind::Delete, "a")};
  node().replicas = 0;
  try {
    (void)w.apply(pointers(actions));
    FAIL() << "a batch no replica acknowledged must be retried";
  } catch (const RedisError& e) {
    EXPECT_EQ(e.kind(), RedisErrorClass::Retry);
    EXPECT_NE(std::string(e.what()).find("0 of 1 replicas"), std::string::npos) << e.what();
  }
  node().replicas = 1;
  (void)w.apply(pointers(actions));
  EXPECT_EQ(node().log.back(), "WAIT 1 50");
}

TEST_F(SingleServer, NoWaitWithoutReplicasAndNoneAfterReadOnlyCommands) {
  auto w = writer("unlink", RedisWaitSettings{1, std::chrono::milliseconds(50)});
  node().keys = {"a"};
  node().replicas = 1;
  EXPECT_EQ(w.exists({"a", "b"}), (std::vector<bool>{true, false}));
  for (const auto& l : node().log) EXPECT_EQ(l.rfind("WAIT", 0), std::string::npos) << l;
  auto plain = writer();
  const std::vector<Action> actions = {make(ActionKind::Delete, "a")};
  (void)plain.apply(pointers(actions));
  EXPECT_EQ(node().log.back(), "UNLINK a");
}

class Sentinels : public ::testing::Test {
 protected:
  BatchWriter writer() {
    std::vector<ClusterNode> sentinels = {{"s1", 26379}, {"s2", 26379}};
    return BatchWriter(std::make_unique<SentinelRouter>("mymaster", sentinels, fake_options(nodes),
                                                        endpoint("", 0), fake_options(nodes)),
                       "unlink", RedisWaitSettings{});
  }
  FakeNodes nodes;
};

TEST_F(Sentinels, TheMasterIsAskedOfTheSentinelsInOrderAndConfirmedWithRole) {
  nodes["s1:26379"].down = true;
  nodes["s2:26379"].named_master = "m1:6379";
  nodes["m1:6379"].role = "slave";
  auto w = writer();
  try {
    w.connect();
    FAIL() << "a master that reports another role must not be used";
  } catch (const RedisError& e) {
    EXPECT_EQ(e.kind(), RedisErrorClass::Retry);
    EXPECT_NE(std::string(e.what()).find("reports role slave"), std::string::npos) << e.what();
  }
  nodes["m1:6379"].role = "master";
  w.connect();
  EXPECT_EQ(w.current_master(), "m1:6379");
  EXPECT_EQ(w.describe(), "sentinel mymaster");
}

TEST_F(Sentinels, ABatchConfirmedByADemotedMasterIsResentToTheNewOne) {
  nodes["s1:26379"].named_master = "m1:6379";
  nodes["m1:6379"].keys = {"a"};
  nodes["m2:6379"].keys = {"a"};
  auto w = writer();
  w.connect();
  // The sentinels promote m2 while the batch is on its way to m1.
  nodes["s1:26379"].named_master = "m2:6379";
  const std::vector<Action> actions = {make(ActionKind::Delete, "a")};
  EXPECT_THROW((void)w.apply(pointers(actions)), RedisError);
  w.close();
  w.connect();
  EXPECT_EQ(w.current_master(), "m2:6379");
  (void)w.apply(pointers(actions));
  EXPECT_TRUE(nodes["m2:6379"].keys.empty());
}

TEST_F(Sentinels, NoSentinelNamingAMasterIsRetried) {
  nodes["s1:26379"].down = true;
  auto w = writer();  // s2 knows no master of that name
  try {
    w.connect();
    FAIL();
  } catch (const RedisError& e) {
    EXPECT_EQ(e.kind(), RedisErrorClass::Retry);
    EXPECT_NE(std::string(e.what()).find("names no master"), std::string::npos) << e.what();
  }
}

TEST_F(Sentinels, SentinelsAndDataNodesEachGetTheirOwnPassword) {
  nodes["s1:26379"].named_master = "m1:6379";
  RedisConnectionOptions sentinel_options = fake_options(nodes);
  sentinel_options.password = "sentinel secret";
  RedisConnectionOptions data_options = fake_options(nodes);
  data_options.password = "data secret";
  RedisEndpoint data;
  data.db = 3;
  SentinelRouter router("mymaster", {{"s1", 26379}}, sentinel_options, data, data_options);
  router.connect();
  EXPECT_EQ(nodes["s1:26379"].log.front(), "AUTH sentinel secret");
  EXPECT_EQ(nodes["m1:6379"].log[0], "AUTH data secret");
  EXPECT_EQ(nodes["m1:6379"].log[1], "SELECT 3");
}

TEST(OpPipeline, ConsecutiveDeletesShareACommandUntilASetOrExists) {
  std::vector<RedisOp> ops = {{RedisOp::Kind::Delete, "a"},
                              {RedisOp::Kind::Delete, "b"},
                              {RedisOp::Kind::Set, "v", "1"},
                              {RedisOp::Kind::Delete, "c"},
                              {RedisOp::Kind::Exists, "d"}};
  const OpPipeline p = plan_pipeline(ops, "DEL");
  ASSERT_EQ(p.commands.size(), 4u);
  EXPECT_EQ(p.commands[0], (RedisCommand{"DEL", "a", "b"}));
  EXPECT_EQ(p.first_op, (std::vector<std::size_t>{0, 2, 3, 4}));
}

}  // namespace
}  // namespace walbust
