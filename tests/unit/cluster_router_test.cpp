#include "walbust/io/cluster_router.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "walbust/io/batch_writer.h"
#include "walbust/io/config.h"

namespace walbust {
namespace {

RedisReply integer(long long v) {
  RedisReply r;
  r.type = RedisReply::Type::Integer;
  r.integer = v;
  return r;
}

RedisReply string(std::string s) {
  RedisReply r;
  r.type = RedisReply::Type::String;
  r.str = std::move(s);
  return r;
}

RedisReply array(std::vector<RedisReply> elements) {
  RedisReply r;
  r.type = RedisReply::Type::Array;
  r.elements = std::move(elements);
  return r;
}

RedisReply node(const std::string& host, long long port, const std::string& id = "abc") {
  // Redis 7 adds a (possibly empty) metadata map as the fourth element.
  return array({string(host), integer(port), string(id), array({})});
}

TEST(ClusterSlotsReply, ParsesRangesMastersAndReplicas) {
  const RedisReply reply = array({
      array({integer(0), integer(5460), node("127.0.0.1", 7000), node("127.0.0.1", 7003)}),
      array({integer(5461), integer(10922), node("127.0.0.1", 7001)}),
      array({integer(10923), integer(16383), node("127.0.0.1", 7002), node("127.0.0.1", 7004),
             node("127.0.0.1", 7005)}),
  });
  const auto ranges = ClusterRouter::slot_ranges(reply, "10.0.0.1");
  ASSERT_EQ(ranges.size(), 3u);
  EXPECT_EQ(ranges[0].first, 0);
  EXPECT_EQ(ranges[0].last, 5460);
  EXPECT_EQ(ranges[0].master.name(), "127.0.0.1:7000");
  ASSERT_EQ(ranges[0].replicas.size(), 1u);
  EXPECT_EQ(ranges[0].replicas[0].name(), "127.0.0.1:7003");
  EXPECT_TRUE(ranges[1].replicas.empty());
  EXPECT_EQ(ranges[2].replicas.size(), 2u);
  const SlotMap map = SlotMap::from_ranges(ranges);
  EXPECT_EQ(map.served_slots(), kClusterSlotCount);
  EXPECT_EQ(map.master_for(key_hash_slot("foo"))->name(), "127.0.0.1:7002");  // slot 12182
}

TEST(ClusterSlotsReply, UnknownEndpointMeansTheNodeAsked) {
  RedisReply nil;  // Nil endpoint
  const RedisReply reply = array({
      array({integer(0), integer(1), node("", 7000)}),
      array({integer(2), integer(3), node("?", 7001)}),
      array({integer(4), integer(5), array({nil, integer(7002)})}),
      array({integer(6), integer(7), node("redis-a", 7003)}),  // hostnames are kept
  });
  const auto ranges = ClusterRouter::slot_ranges(reply, "10.0.0.9");
  ASSERT_EQ(ranges.size(), 4u);
  EXPECT_EQ(ranges[0].master.name(), "10.0.0.9:7000");
  EXPECT_EQ(ranges[1].master.name(), "10.0.0.9:7001");
  EXPECT_EQ(ranges[2].master.name(), "10.0.0.9:7002");
  EXPECT_EQ(ranges[3].master.name(), "redis-a:7003");
}

TEST(ClusterSlotsReply, EmptyClusterHasNoRanges) {
  EXPECT_TRUE(ClusterRouter::slot_ranges(array({}), "h").empty());
}

TEST(ClusterSlotsReply, RejectsMalformedReplies) {
  const std::vector<RedisReply> bad = {
      string("OK"),
      array({string("x")}),
      array({array({integer(0), integer(1)})}),                    // no master
      array({array({integer(0), string("1"), node("a", 1)})}),     // slot not an integer
      array({array({integer(5), integer(4), node("a", 1)})}),      // reversed
      array({array({integer(0), integer(16384), node("a", 1)})}),  // out of range
      array({array({integer(-1), integer(3), node("a", 1)})}),
      array({array({integer(0), integer(1), array({string("a")})})}),  // node without port
      array({array({integer(0), integer(1), array({string("a"), string("1")})})}),
  };
  for (std::size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_THROW((void)ClusterRouter::slot_ranges(bad[i], "h"), std::invalid_argument);
  }
}

TEST(MakeKeySink, ClusterSettingsGiveTheClusterSink) {
  RedisSettings s;
  s.cluster = true;
  s.nodes = {"127.0.0.1:7000", "127.0.0.1:7001"};
  auto sink = make_key_sink(s, "");
  auto* writer = dynamic_cast<BatchWriter*>(sink.get());
  ASSERT_NE(writer, nullptr);
  EXPECT_NE(dynamic_cast<ClusterRouter*>(&writer->router()), nullptr);
  EXPECT_EQ(sink->describe(), "cluster 127.0.0.1:7000,127.0.0.1:7001");
  EXPECT_FALSE(sink->connected());

  RedisSettings single;
  auto plain = make_key_sink(single, "");
  auto* plain_writer = dynamic_cast<BatchWriter*>(plain.get());
  ASSERT_NE(plain_writer, nullptr);
  EXPECT_EQ(dynamic_cast<ClusterRouter*>(&plain_writer->router()), nullptr);
}

TEST(MakeKeySink, ClusterWithADatabaseOrNoNodesIsAConfigurationError) {
  RedisSettings s;
  s.cluster = true;
  s.nodes = {"127.0.0.1:7000"};
  s.endpoint.db = 2;
  auto sink = make_key_sink(s, "");
  try {
    sink->connect();
    FAIL() << "connect() must fail";
  } catch (const RedisError& e) {
    EXPECT_TRUE(e.fatal()) << e.what();
  }
  RedisSettings none;
  none.cluster = true;
  none.nodes = {"no-port:x"};
  auto empty = make_key_sink(none, "");
  try {
    empty->connect();
    FAIL() << "connect() must fail";
  } catch (const RedisError& e) {
    EXPECT_TRUE(e.fatal()) << e.what();
  }
}

TEST(ClusterSink, UnreachableSeedsAreRetried) {
  RedisSettings s;
  s.cluster = true;
  s.nodes = {"127.0.0.1:1"};  // nothing listens on port 1
  s.timeout = std::chrono::milliseconds(200);
  auto sink = make_key_sink(s, "");
  try {
    sink->connect();
    FAIL() << "connect() must fail";
  } catch (const RedisError& e) {
    EXPECT_EQ(e.kind(), RedisErrorClass::Retry) << e.what();
  }
  EXPECT_FALSE(sink->connected());
}

}  // namespace
}  // namespace walbust
