#include "walbust/core/cluster_slots.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace walbust {
namespace {

TEST(Crc16, MatchesTheClusterSpecificationVector) {
  EXPECT_EQ(crc16_xmodem("123456789"), 0x31C3);
  EXPECT_EQ(crc16_xmodem(""), 0);
  EXPECT_EQ(crc16_xmodem(std::string(1, '\0')), 0);
}

struct SlotCase {
  const char* key;
  const char* hashed;  // the part of the key the slot is computed from
};

TEST(KeyHashSlot, HashTagRules) {
  // From the Redis Cluster specification, "Hash tags".
  const SlotCase cases[] = {
      {"{user1000}.following", "user1000"},
      {"{user1000}.followers", "user1000"},
      {"foo{}{bar}", "foo{}{bar}"},  // empty first tag: the whole key
      {"foo{{bar}}zap", "{bar"},     // the first '{' up to the first '}' after it
      {"foo{bar}{zap}", "bar"},      // only the first tag counts
      {"{}", "{}"},
      {"{", "{"},
      {"}", "}"},
      {"}{a}", "a"},   // a '}' before the first '{' is an ordinary byte
      {"a{b", "a{b"},  // no closing brace
      {"{a}", "a"},
      {"x{ }y", " "},  // a space is a valid tag
      {"post_detail_7", "post_detail_7"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.key);
    EXPECT_EQ(key_hash_slot(c.key), crc16_xmodem(c.hashed) % kClusterSlotCount);
  }
}

TEST(KeyHashSlot, KnownSlots) {
  // Values printed by CLUSTER KEYSLOT in the Redis documentation.
  EXPECT_EQ(key_hash_slot("somekey"), 11058);
  EXPECT_EQ(key_hash_slot("foo{hash_tag}"), 2515);
  EXPECT_EQ(key_hash_slot("foo"), 12182);
  EXPECT_EQ(key_hash_slot("123456789"), 0x31C3);
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

TEST(KeyHashSlot, AgreesWithRedisClusterKeyslot) {
  // Generated with CLUSTER KEYSLOT on Redis 7.0: edge cases and random binary keys.
  std::ifstream in(WALBUST_SOURCE_DIR "/tests/unit/data/cluster_keyslots.txt");
  ASSERT_TRUE(in) << "cannot open tests/unit/data/cluster_keyslots.txt";
  std::string line;
  int checked = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string hex;
    unsigned slot = 0;
    fields >> hex >> slot;
    const std::string key = hex == "-" ? "" : from_hex(hex);
    EXPECT_EQ(key_hash_slot(key), slot) << "key (hex) " << hex;
    ++checked;
  }
  EXPECT_GT(checked, 300);
}

TEST(KeyHashSlot, BinaryKeys) {
  const std::string key("a\0b{c\0}", 7);
  EXPECT_EQ(key_hash_slot(key), crc16_xmodem(std::string("c\0", 2)) % kClusterSlotCount);
  EXPECT_LT(key_hash_slot("\xff\xfe\x80"), kClusterSlotCount);
}

TEST(ClusterNode, Parses) {
  struct Case {
    const char* text;
    std::optional<ClusterNode> want;
  };
  const Case cases[] = {
      {"127.0.0.1:6381", ClusterNode{"127.0.0.1", 6381}},
      {"redis-1.example:7000", ClusterNode{"redis-1.example", 7000}},
      {"::1:7000", ClusterNode{"::1", 7000}},
      {"[::1]:7000", ClusterNode{"::1", 7000}},
      {":7000", ClusterNode{"", 7000}},
      {"127.0.0.1", std::nullopt},
      {"127.0.0.1:", std::nullopt},
      {"127.0.0.1:0", std::nullopt},
      {"127.0.0.1:65536", std::nullopt},
      {"127.0.0.1:70x", std::nullopt},
      {"", std::nullopt},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_EQ(parse_cluster_node(c.text), c.want);
  }
  EXPECT_EQ((ClusterNode{"127.0.0.1", 7000}.name()), "127.0.0.1:7000");
}

TEST(Redirection, Parses) {
  auto moved = parse_redirection("MOVED 3999 127.0.0.1:6381");
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->kind, Redirection::Kind::Moved);
  EXPECT_EQ(moved->slot, 3999);
  EXPECT_EQ(moved->node, (ClusterNode{"127.0.0.1", 6381}));

  auto ask = parse_redirection("ASK 16383 ::1:7002");
  ASSERT_TRUE(ask);
  EXPECT_EQ(ask->kind, Redirection::Kind::Ask);
  EXPECT_EQ(ask->slot, 16383);
  EXPECT_EQ(ask->node, (ClusterNode{"::1", 7002}));

  auto same_host = parse_redirection("MOVED 1 :7002");
  ASSERT_TRUE(same_host);
  EXPECT_EQ(same_host->node.host, "");

  for (const char* bad : {"MOVED", "MOVED 3999", "MOVED 16384 127.0.0.1:1", "MOVED x 127.0.0.1:1",
                          "MOVED -1 127.0.0.1:1", "ASK 1 nowhere", "TRYAGAIN Multiple keys",
                          "moved 1 a:1", "ERR MOVED 1 a:1", "CLUSTERDOWN The cluster is down"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(parse_redirection(bad));
  }
}

SlotRange range(std::uint16_t first, std::uint16_t last, const char* host, int port,
                std::vector<ClusterNode> replicas = {}) {
  return SlotRange{first, last, ClusterNode{host, port}, std::move(replicas)};
}

TEST(SlotMap, RoutesEverySlotOfTheRanges) {
  const auto map =
      SlotMap::from_ranges({range(0, 5460, "a", 1, {{"ra", 1}}), range(5461, 10922, "b", 2),
                            range(10923, 16383, "c", 3, {{"rc", 3}})});
  EXPECT_EQ(map.served_slots(), kClusterSlotCount);
  EXPECT_EQ(map.master_for(0)->name(), "a:1");
  EXPECT_EQ(map.master_for(5460)->name(), "a:1");
  EXPECT_EQ(map.master_for(5461)->name(), "b:2");
  EXPECT_EQ(map.master_for(16383)->name(), "c:3");
  EXPECT_EQ(map.master_for(16384), nullptr);
  const auto masters = map.masters();
  ASSERT_EQ(masters.size(), 3u);
  EXPECT_EQ(masters[0].name(), "a:1");
  EXPECT_EQ(masters[2].name(), "c:3");
  EXPECT_EQ(map.nodes().size(), 5u);  // replicas are known, for finding a node to ask
}

TEST(SlotMap, ScatteredRangesOfOneMasterAndGaps) {
  const auto map = SlotMap::from_ranges(
      {range(0, 99, "a", 1), range(200, 299, "a", 1), range(100, 100, "b", 2)});
  EXPECT_EQ(map.served_slots(), 201u);
  EXPECT_EQ(map.master_for(101), nullptr);
  EXPECT_EQ(map.master_for(250)->name(), "a:1");
  EXPECT_EQ(map.masters().size(), 2u);
  EXPECT_FALSE(map.empty());
  EXPECT_TRUE(SlotMap{}.empty());
  EXPECT_TRUE(SlotMap::from_ranges({}).masters().empty());
}

TEST(SlotMap, RejectsInvalidRanges) {
  EXPECT_THROW((void)SlotMap::from_ranges({range(10, 9, "a", 1)}), std::invalid_argument);
  EXPECT_THROW((void)SlotMap::from_ranges({range(0, 16384, "a", 1)}), std::invalid_argument);
  EXPECT_THROW((void)SlotMap::from_ranges({range(0, 1, "a", 0)}), std::invalid_argument);
}

TEST(SlotMap, MovedReassignsOneSlot) {
  auto map = SlotMap::from_ranges({range(0, 16383, "a", 1)});
  const auto before = map;
  EXPECT_TRUE(map.same_owners(before));
  map.assign(3999, ClusterNode{"b", 2});
  EXPECT_EQ(map.master_for(3999)->name(), "b:2");
  EXPECT_EQ(map.master_for(3998)->name(), "a:1");
  EXPECT_EQ(map.masters().size(), 2u);
  EXPECT_FALSE(map.same_owners(before));
  map.assign(3999, ClusterNode{"a", 1});
  EXPECT_TRUE(map.same_owners(before));

  SlotMap partial;
  partial.assign(7, ClusterNode{"a", 1});
  EXPECT_EQ(partial.served_slots(), 1u);
  partial.assign(7, ClusterNode{"b", 1});
  EXPECT_EQ(partial.served_slots(), 1u);
}

TEST(SlotMap, SameOwnersIgnoresNodeOrderAndReplicas) {
  const auto x =
      SlotMap::from_ranges({range(0, 8191, "a", 1), range(8192, 16383, "b", 2, {{"r", 9}})});
  const auto y = SlotMap::from_ranges({range(8192, 16383, "b", 2), range(0, 8191, "a", 1)});
  EXPECT_TRUE(x.same_owners(y));
  const auto z = SlotMap::from_ranges({range(0, 8190, "a", 1), range(8191, 16383, "b", 2)});
  EXPECT_FALSE(x.same_owners(z));
}

}  // namespace
}  // namespace walbust
