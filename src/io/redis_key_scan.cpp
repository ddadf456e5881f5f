#include "walbust/redis_key_scan.h"

#include <stdexcept>

#include "walbust/cluster_slots.h"
#include "walbust/redis_cluster_sink.h"

namespace walbust {

RedisKeyScan::RedisKeyScan(const RedisSettings& settings, std::string password)
    : settings_(settings), password_(std::move(password)) {}

RedisKeyScan::~RedisKeyScan() = default;

void RedisKeyScan::connect() {
  masters_.clear();
  turn_ = 0;
  if (settings_.cluster) {
    read_cluster_masters();
    return;
  }
  Master m;
  m.client = std::make_unique<RedisClient>(settings_.endpoint, password_, settings_.timeout);
  m.client->connect();
  masters_.push_back(std::move(m));
}

void RedisKeyScan::read_cluster_masters() {
  std::string last_error = "no valid nodes: [host:port] configured";
  for (const auto& seed_text : settings_.nodes) {
    const auto seed = parse_cluster_node(seed_text);
    if (!seed || seed->host.empty()) continue;
    RedisEndpoint ep = settings_.endpoint;
    ep.host = seed->host;
    ep.port = seed->port;
    ep.socket_path.clear();
    ep.db = 0;
    try {
      RedisClient client(ep, password_, settings_.timeout);
      client.connect();
      const auto ranges =
          RedisClusterSink::slot_ranges(client.command({"CLUSTER", "SLOTS"}), seed->host);
      for (const auto& node : SlotMap::from_ranges(ranges).masters()) {
        RedisEndpoint m = ep;
        m.host = node.host;
        m.port = node.port;
        Master master;
        master.client = std::make_unique<RedisClient>(m, password_, settings_.timeout);
        master.client->connect();
        masters_.push_back(std::move(master));
      }
      if (!masters_.empty()) return;
      last_error = seed->name() + " serves no slots";
    } catch (const RedisError& e) {
      last_error = seed->name() + ": " + e.what();
      masters_.clear();
    } catch (const std::invalid_argument& e) {
      last_error = seed->name() + ": " + e.what();
      masters_.clear();
    }
  }
  throw RedisError(RedisErrorClass::Fatal,
                   "cluster: no node returned the masters (" + last_error + ")");
}

std::string RedisKeyScan::describe() const {
  if (!settings_.cluster) return settings_.endpoint.describe();
  std::string out = "cluster ";
  for (std::size_t i = 0; i < settings_.nodes.size(); ++i)
    out += (i == 0 ? "" : ",") + settings_.nodes[i];
  return out + " (" + std::to_string(masters_.size()) + " masters)";
}

bool RedisKeyScan::exhausted() const {
  for (const auto& m : masters_) {
    if (!m.done) return false;
  }
  return true;
}

void RedisKeyScan::check_scan(const RedisReply& reply, const Master& master) {
  if (reply.type != RedisReply::Type::Array || reply.elements.size() != 2 ||
      reply.elements[1].type != RedisReply::Type::Array) {
    throw RedisError(
        RedisErrorClass::Fatal,
        "unexpected SCAN reply from " + master.client->endpoint().describe() + ": " +
            (reply.type == RedisReply::Type::Error ? reply.str
                                                   : std::string("not a cursor and keys")));
  }
}

bool RedisKeyScan::next_page(std::size_t max_keys, std::vector<ScannedKey>& out) {
  out.clear();
  for (std::size_t tried = 0; tried < masters_.size(); ++tried) {
    Master& m = masters_[turn_];
    turn_ = (turn_ + 1) % masters_.size();
    if (m.done) continue;
    RedisReply page = m.prefetched ? std::move(*m.prefetched)
                                   : m.client->command({"SCAN", m.cursor, "COUNT", "1000"});
    m.prefetched.reset();
    check_scan(page, m);
    m.cursor = page.elements[0].str;
    m.done = m.cursor == "0";
    const auto& keys = page.elements[1].elements;
    const std::size_t n = std::min(keys.size(), max_keys);
    std::vector<RedisCommand> commands;
    commands.reserve(n + 1);
    for (std::size_t i = 0; i < n; ++i) commands.push_back({"PTTL", keys[i].str});
    if (!m.done) commands.push_back({"SCAN", m.cursor, "COUNT", "1000"});
    auto replies = commands.empty() ? std::vector<RedisReply>{} : m.client->pipeline(commands);
    if (!m.done) m.prefetched = std::move(replies.back());
    for (std::size_t i = 0; i < n; ++i) {
      // -2: the key expired or was deleted since SCAN saw it; -1: it has no TTL.
      const bool integer = replies[i].type == RedisReply::Type::Integer;
      if (integer && replies[i].integer == -2) continue;
      out.push_back({keys[i].str, !(integer && replies[i].integer == -1)});
    }
    return true;
  }
  return false;
}

}  // namespace walbust
