#include "walbust/core/cluster_slots.h"

#include <algorithm>
#include <charconv>
#include <stdexcept>

namespace walbust {
namespace {

constexpr std::array<std::uint16_t, 256> make_crc16_table() {
  std::array<std::uint16_t, 256> table{};
  for (unsigned i = 0; i < 256; ++i) {
    auto crc = static_cast<std::uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<std::uint16_t>((crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    table[i] = crc;
  }
  return table;
}

constexpr auto kCrc16Table = make_crc16_table();

std::optional<int> parse_port(std::string_view text) {
  int port = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, port);
  if (ec != std::errc() || ptr != end || port <= 0 || port > 65535) return std::nullopt;
  return port;
}

}  // namespace

std::uint16_t crc16_xmodem(std::string_view data) {
  std::uint16_t crc = 0;
  for (const char c : data) {
    const auto byte = static_cast<unsigned char>(c);
    crc = static_cast<std::uint16_t>((crc << 8) ^ kCrc16Table[((crc >> 8) ^ byte) & 0xFF]);
  }
  return crc;
}

std::uint16_t key_hash_slot(std::string_view key) {
  const auto open = key.find('{');
  if (open != std::string_view::npos) {
    const auto close = key.find('}', open + 1);
    // "{}" hashes the whole key: an empty tag would put every such key in one slot.
    if (close != std::string_view::npos && close > open + 1)
      key = key.substr(open + 1, close - open - 1);
  }
  return static_cast<std::uint16_t>(crc16_xmodem(key) & (kClusterSlotCount - 1));
}

std::string ClusterNode::name() const { return host + ":" + std::to_string(port); }

std::optional<ClusterNode> parse_cluster_node(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const auto port = parse_port(text.substr(colon + 1));
  if (!port) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return ClusterNode{std::string(host), *port};
}

SlotMap::SlotMap() { owner_.fill(kNone); }

std::uint16_t SlotMap::node_index(const ClusterNode& node) {
  const auto it = std::find(nodes_.begin(), nodes_.end(), node);
  if (it != nodes_.end()) return static_cast<std::uint16_t>(it - nodes_.begin());
  nodes_.push_back(node);
  return static_cast<std::uint16_t>(nodes_.size() - 1);
}

SlotMap SlotMap::from_ranges(const std::vector<SlotRange>& ranges) {
  SlotMap map;
  for (const auto& r : ranges) {
    if (r.first > r.last || r.last >= kClusterSlotCount) {
      throw std::invalid_argument("CLUSTER SLOTS: invalid slot range " + std::to_string(r.first) +
                                  "-" + std::to_string(r.last));
    }
    if (r.master.port <= 0)
      throw std::invalid_argument("CLUSTER SLOTS: range without a master address");
    const std::uint16_t index = map.node_index(r.master);
    for (unsigned s = r.first; s <= r.last; ++s) {
      if (map.owner_[s] == kNone) ++map.served_;
      map.owner_[s] = index;
    }
    for (const auto& replica : r.replicas) (void)map.node_index(replica);
  }
  return map;
}

const ClusterNode* SlotMap::master_for(std::uint16_t slot) const {
  if (slot >= kClusterSlotCount || owner_[slot] == kNone) return nullptr;
  return &nodes_[owner_[slot]];
}

std::vector<ClusterNode> SlotMap::masters() const {
  std::vector<ClusterNode> out;
  std::vector<bool> seen(nodes_.size(), false);
  for (const auto index : owner_) {
    if (index == kNone || seen[index]) continue;
    seen[index] = true;
    out.push_back(nodes_[index]);
  }
  return out;
}

void SlotMap::assign(std::uint16_t slot, const ClusterNode& node) {
  if (slot >= kClusterSlotCount) return;
  if (owner_[slot] == kNone) ++served_;
  owner_[slot] = node_index(node);
}

bool SlotMap::same_owners(const SlotMap& other) const {
  for (std::size_t s = 0; s < kClusterSlotCount; ++s) {
    const ClusterNode* a = master_for(static_cast<std::uint16_t>(s));
    const ClusterNode* b = other.master_for(static_cast<std::uint16_t>(s));
    if ((a == nullptr) != (b == nullptr)) return false;
    if (a != nullptr && !(*a == *b)) return false;
  }
  return true;
}

std::optional<Redirection> parse_redirection(std::string_view error) {
  Redirection r;
  if (error.substr(0, 6) == "MOVED ") {
    r.kind = Redirection::Kind::Moved;
    error.remove_prefix(6);
  } else if (error.substr(0, 4) == "ASK ") {
    r.kind = Redirection::Kind::Ask;
    error.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const auto space = error.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const std::string_view slot_text = error.substr(0, space);
  unsigned slot = 0;
  const auto [ptr, ec] =
      std::from_chars(slot_text.data(), slot_text.data() + slot_text.size(), slot);
  if (ec != std::errc() || ptr != slot_text.data() + slot_text.size() ||
      slot >= kClusterSlotCount) {
    return std::nullopt;
  }
  r.slot = static_cast<std::uint16_t>(slot);
  auto node = parse_cluster_node(error.substr(space + 1));
  if (!node) return std::nullopt;
  r.node = std::move(*node);
  return r;
}

}  // namespace walbust
