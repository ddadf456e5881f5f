#pragma once
// Redis Cluster routing facts, without I/O: the CRC16 hash slot of a key (with the
// `{hash tag}` rule), the slot-to-master map built from a CLUSTER SLOTS reply, and the
// MOVED/ASK redirections a node answers with (Redis Cluster specification).
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace walbust {

inline constexpr std::uint16_t kClusterSlotCount = 16384;

// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection.
[[nodiscard]] std::uint16_t crc16_xmodem(std::string_view data);

// The slot of a key: CRC16 of the key, or of the hash tag, modulo 16384. The hash tag is
// what lies between the first '{' and the first '}' after it, if that is non-empty:
// "{user1000}.following" → "user1000"; "foo{}{bar}" → the whole key.
[[nodiscard]] std::uint16_t key_hash_slot(std::string_view key);

struct ClusterNode {
  std::string host;
  int port = 0;

  // "host:port"; an IPv6 host is written as Redis writes it, without brackets.
  [[nodiscard]] std::string name() const;
  friend bool operator==(const ClusterNode&, const ClusterNode&) = default;
};

// "host:port", "[::1]:port" or "::1:port" (the last colon separates the port). An empty
// host is allowed: Redis sends ":port" for "the endpoint you are talking to".
[[nodiscard]] std::optional<ClusterNode> parse_cluster_node(std::string_view text);

// One entry of a CLUSTER SLOTS reply: a slot range, its master and its replicas.
struct SlotRange {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
  ClusterNode master;
  std::vector<ClusterNode> replicas;
};

// Which master serves each slot. Slots nobody serves (a cluster being set up, or a master
// lost without a replica) have no node.
class SlotMap {
 public:
  SlotMap();

  // Ranges out of bounds or reversed are rejected with std::invalid_argument.
  [[nodiscard]] static SlotMap from_ranges(const std::vector<SlotRange>& ranges);

  // The master of a slot; nullptr when the slot is not served.
  [[nodiscard]] const ClusterNode* master_for(std::uint16_t slot) const;
  // Every master serving at least one slot, in order of their first slot.
  [[nodiscard]] std::vector<ClusterNode> masters() const;
  // Every node the map knows (masters and replicas), for finding a node to ask.
  [[nodiscard]] const std::vector<ClusterNode>& nodes() const { return nodes_; }
  [[nodiscard]] bool empty() const { return served_ == 0; }
  [[nodiscard]] std::size_t served_slots() const { return served_; }

  // Applies a MOVED redirection: the slot now lives on `node`.
  void assign(std::uint16_t slot, const ClusterNode& node);

  // Same slot owners (node lists may differ in order or replicas).
  [[nodiscard]] bool same_owners(const SlotMap& other) const;

 private:
  static constexpr std::uint16_t kNone = 0xFFFF;
  std::uint16_t node_index(const ClusterNode& node);

  std::vector<ClusterNode> nodes_;
  std::array<std::uint16_t, kClusterSlotCount> owner_;
  std::size_t served_ = 0;
};

struct Redirection {
  enum class Kind { Moved, Ask };
  Kind kind = Kind::Moved;
  std::uint16_t slot = 0;
  ClusterNode node;  // host may be empty: the node that sent the redirection
};

// "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381"; nullopt for any other text.
[[nodiscard]] std::optional<Redirection> parse_redirection(std::string_view error);

}  // namespace walbust
