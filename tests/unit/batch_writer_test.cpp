// The batch writer and the routers against scripted servers: a fake transport speaks RESP
// for an in-memory keyspace per node, so the batch semantics (deduplication, ordering,
// patterns where they stand, DEL/UNLINK, WAIT) and sentinel discovery are tested without
// servers.
#include "walbust/io/batch_writer.h"

#include <fnmatch.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "walbust/io/sentinel_router.h"

namespace walbust {
namespace {

struct FakeNode {
  std::set<std::string> keys;
  std::string role = "master";
  int replicas = 0;              // what WAIT reports
  std::string named_master;      // for a sentinel: "host:port", "" for nil
  std::string error;             // when set, every data command gets this error
  bool down = false;             // connections are refused
  std::vector<std::string> log;  // commands received, arguments joined by spaces
};

using Cluster = std::map<std::string, FakeNode>;  // by "host:port"

std::string bulk(const std::string& s) {
  return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
}

std::string reply_for(FakeNode& n, const std::vector<std::string>& argv) {
  const std::string& cmd = argv[0];
  if (cmd == "PING") return "+PONG\r\n";
  if (cmd == "AUTH" || cmd == "SELECT") return "+OK\r\n";
  if (cmd == "ROLE") return "*1\r\n" + bulk(n.role);
  if (cmd == "SENTINEL") {
    if (n.named_master.empty()) return "*-1\r\n";
    const auto colon = n.named_master.rfind(':');
    return "*2\r\n" + bulk(n.named_master.substr(0, colon)) +
           bulk(n.named_master.substr(colon + 1));
  }
  if (cmd == "WAIT") return ":" + std::to_string(n.replicas) + "\r\n";
  if (!n.error.empty()) return "-" + n.error + "\r\n";
  if (cmd == "UNLINK" || cmd == "DEL") {
    long long removed = 0;
    for (std::size_t i = 1; i < argv.size(); ++i)
      removed += static_cast<long long>(n.keys.erase(argv[i]));
    return ":" + std::to_string(removed) + "\r\n";
  }
  if (cmd == "SET") {
    n.keys.insert(argv[1]);
    return "+OK\r\n";
  }
  if (cmd == "EXISTS") return ":" + std::to_string(n.keys.count(argv[1])) + "\r\n";
  if (cmd == "FLUSHDB") {
    n.keys.clear();
    return "+OK\r\n";
  }
  if (cmd == "SCAN") {
    std::string out;
    std::size_t count = 0;
    for (const auto& k : n.keys) {
      if (fnmatch(argv[3].c_str(), k.c_str(), 0) == 0) {
        out += bulk(k);
        ++count;
      }
    }
    return "*2\r\n" + bulk("0") + "*" + std::to_string(count) + "\r\n" + out;
  }
  return "-ERR unknown command '" + cmd + "'\r\n";
}

// Parses the RESP arrays a client writes and queues the node's replies.
class FakeTransport final : public RedisTransport {
 public:
  explicit FakeTransport(FakeNode& node) : node_(node) {}
  [[nodiscard]] int fd() const override { return -1; }
  Io read(char* buf, std::size_t len) override {
    if (out_.empty()) return Io{0, Want::Read};
    const std::size_t n = std::min(len, out_.size());
    out_.copy(buf, n);
    out_.erase(0, n);
    return Io{n, Want::None};
  }
  Io write(const char* buf, std::size_t len) override {
    in_.append(buf, len);
    while (auto argv = next_command()) {
      std::string line;
      for (const auto& a : *argv) line += (line.empty() ? "" : " ") + a;
      node_.log.push_back(line);
      out_ += reply_for(node_, *argv);
    }
    return Io{len, Want::None};
  }

 private:
  std::optional<std::vector<std::string>> next_command() {
    // *N\r\n then N times $len\r\narg\r\n; the tests write whole commands only.
    if (in_.empty()) return std::nullopt;
    std::size_t pos = in_.find("\r\n");
    const int n = std::stoi(in_.substr(1, pos - 1));
    pos += 2;
    std::vector<std::string> argv;
    for (int i = 0; i < n; ++i) {
      const std::size_t eol = in_.find("\r\n", pos);
      const std::size_t len = std::stoul(in_.substr(pos + 1, eol - pos - 1));
      argv.push_back(in_.substr(eol + 2, len));
      pos = eol + 2 + len + 2;
    }
    in_.erase(0, pos);
    return argv;
  }

  FakeNode& node_;
  std::string in_;
  std::string out_;
};

RedisConnectionOptions fake_options(Cluster& nodes) {
  RedisConnectionOptions o;
  o.opener = [&nodes](const RedisEndpoint& ep, std::chrono::milliseconds,
                      const TlsContext*) -> std::unique_ptr<RedisTransport> {
    FakeNode& n = nodes[ep.host + ":" + std::to_string(ep.port)];
    if (n.down) throw RedisError(RedisErrorClass::Retry, "connection refused");
    return std::make_unique<FakeTransport>(n);
  };
  return o;
}

RedisEndpoint endpoint(const std::string& host, int port) {
  RedisEndpoint ep;
  ep.host = host;
  ep.port = port;
  return ep;
}

Action make(ActionKind kind, std::string key, std::string value = "") {
  Action a;
  a.kind = kind;
  a.key = std::move(key);
  a.value = std::move(value);
  return a;
}

std::vector<const Action*> pointers(const std::vector<Action>& actions) {
  std::vector<const Action*> out;
  for (const auto& a : actions) out.push_back(&a);
  return out;
}

std::vector<std::string> data_commands(const FakeNode& n) {
  std::vector<std::string> out;
  for (const auto& l : n.log) {
    if (l != "PING" && l.rfind("ROLE", 0) != 0 && l.rfind("SENTINEL", 0) != 0) out.push_back(l);
  }
  return out;
}

class SingleServer : public ::testing::Test {
 protected:
  BatchWriter writer(const std::string& verb = "unlink", RedisWaitSettings wait = {}) {
    return BatchWriter(std::make_unique<SingleRouter>(endpoint("r", 6379), fake_options(nodes)),
                       verb, wait);
  }
  FakeNode& node() { return nodes["r:6379"]; }
  Cluster nodes;
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
  Cluster nodes;
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
