#include "walbust/io/redis_key_scan.h"

namespace walbust {

RedisKeyScan::RedisKeyScan(const RedisSettings& settings, std::string password)
    : sink_(make_key_sink(settings, password)) {}

RedisKeyScan::~RedisKeyScan() = default;

void RedisKeyScan::connect() {
  masters_.clear();
  turn_ = 0;
  for (RedisClient* client : sink_->masters()) masters_.push_back(Master{client});
  if (masters_.empty())
    throw RedisError(RedisErrorClass::Retry, sink_->describe() + ": no master serves data");
}

std::string RedisKeyScan::describe() const {
  if (masters_.size() <= 1) return sink_->describe();
  return sink_->describe() + " (" + std::to_string(masters_.size()) + " masters)";
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
        "unexpected SCAN reply from " + master.client->describe() + ": " +
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
