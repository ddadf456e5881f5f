#include "walbust/io/batch_writer.h"

#include <algorithm>

#include "walbust/core/events.h"
#include "walbust/core/key_family.h"

namespace walbust {

std::vector<std::string_view> scan_reply_keys(const RedisReply& reply, std::string& cursor,
                                              const std::string& where) {
  if (reply.type != RedisReply::Type::Array || reply.elements.size() != 2 ||
      reply.elements[1].type != RedisReply::Type::Array) {
    throw RedisError(RedisErrorClass::Retry, "unexpected SCAN reply from " + where);
  }
  cursor = reply.elements[0].str;
  std::vector<std::string_view> keys;
  keys.reserve(reply.elements[1].elements.size());
  for (const auto& k : reply.elements[1].elements) keys.push_back(k.str);
  return keys;
}

BatchWriter::BatchWriter(std::unique_ptr<RedisRouter> router, const std::string& delete_command,
                         RedisWaitSettings wait)
    : router_(std::move(router)),
      delete_verb_(delete_command == "del" ? "DEL" : "UNLINK"),
      wait_(wait) {}

void BatchWriter::send(BatchResult& result) {
  if (ops_.empty()) return;
  RouterCounts counts;
  router_->execute(ops_, delete_verb_, counts);
  result.commands += counts.commands;
  result.existed += counts.existed;
  ops_.clear();
}

BatchResult BatchWriter::apply(const std::vector<const Action*>& actions) {
  BatchResult result;
  if (!router_->connected()) router_->connect();
  dedup_.scan(actions);
  ops_.clear();
  events_.clear();
  std::vector<const std::string*> patterns;
  for (std::size_t i = 0; i < actions.size(); ++i) {
    const Action* a = actions[i];
    switch (a->kind) {
      case ActionKind::Delete:
        if (dedup_.repeated(i)) break;
        ops_.push_back(RedisOp{RedisOp::Kind::Delete, a->key, {}, 0});
        ++result.keys;
        break;
      case ActionKind::Publish:
        events_.push_back(a);
        break;
      case ActionKind::BumpVersion:
        // Ordered after earlier deletes of the batch; SET is idempotent on replay. A
        // pattern the new key matches must be scanned again where it next stands.
        ops_.push_back(RedisOp{RedisOp::Kind::Set, a->key, a->value, 0});
        std::erase_if(patterns, [&](const std::string* p) { return glob_match(*p, a->key); });
        break;
      case ActionKind::DeletePattern:
        // Scanned where it stands: what earlier transactions delete goes first, and no
        // later transaction's delete is visible before this pattern's keys are gone.
        // Once per batch (unless a SET of the batch made a key it matches): every scan
        // runs after all of the batch's commits anyway.
        if (std::none_of(patterns.begin(), patterns.end(),
                         [&](const std::string* p) { return *p == a->key; })) {
          patterns.push_back(&a->key);
          send(result);
          delete_pattern(a->key, result);
          ++result.patterns;
        }
        break;
    }
  }
  send(result);
  send_events(result);
  wait_for_replicas();
  router_->check_master();
  return result;
}

void BatchWriter::send_events(BatchResult& result) {
  if (events_.empty()) return;
  event_argv_.clear();
  for (const Action* a : events_) {
    event_argv_.push_back(event_command(*a->event));
    RedisOp op{RedisOp::Kind::Command, a->key, {}, 0};
    op.argv = &event_argv_.back();
    ops_.push_back(op);
  }
  RouterCounts counts;
  router_->execute(ops_, delete_verb_, counts);
  result.commands += counts.commands;
  for (std::size_t i = 0; i < events_.size(); ++i) {
    const PublishDestination& d = events_[i]->event->destination;
    // PUBLISH replies with the number of clients that received the message.
    result.events.push_back(
        EventResult{d.kind, d.name, d.kind == PublishKind::Channel ? ops_[i].reply : -1});
  }
  ops_.clear();
}

void BatchWriter::scan_and_delete(RedisClient& master, const std::string& pattern,
                                  BatchResult& result) {
  std::string cursor = "0";
  do {
    const RedisReply reply =
        master.command({"SCAN", cursor, "MATCH", pattern, "COUNT", kScanCount});
    ++result.commands;
    const auto keys = scan_reply_keys(reply, cursor, master.describe());
    for (const auto k : keys) ops_.push_back(RedisOp{RedisOp::Kind::Delete, k, {}, 0});
    result.keys += keys.size();
    send(result);
  } while (cursor != "0");
}

void BatchWriter::delete_pattern(const std::string& pattern, BatchResult& result) {
  // A key moving between masters while they are scanned one after the other can escape
  // every scan; a scan that saw no slot move and no migration in progress cannot miss it.
  for (int pass = 0; pass < kMaxScanPasses; ++pass) {
    const std::string before = router_->topology();
    for (RedisClient* master : router_->masters()) scan_and_delete(*master, pattern, result);
    const std::string after = router_->topology();
    if (before == after && before.find('[') == std::string::npos) return;
  }
  throw RedisError(RedisErrorClass::Retry,
                   "slots kept moving while scanning for " + pattern + "; retrying");
}

void BatchWriter::wait_for_replicas() {
  const std::vector<RedisClient*> written = router_->take_written();
  if (wait_.replicas <= 0 || written.empty()) return;
  const std::string replicas = std::to_string(wait_.replicas);
  const std::string timeout = std::to_string(wait_.timeout.count());
  // Asked of every master at once, so the timeouts overlap instead of adding up.
  for (RedisClient* c : written) c->send({{"WAIT", replicas, timeout}});
  for (RedisClient* c : written) {
    const RedisReply reply = c->receive(1).front();
    if (reply.type == RedisReply::Type::Error) {
      throw RedisError(classify_redis_error(reply.str),
                       "WAIT failed on " + c->describe() + ": " + reply.str);
    }
    if (reply.type != RedisReply::Type::Integer || reply.integer < wait_.replicas) {
      throw RedisError(RedisErrorClass::Retry,
                       "WAIT on " + c->describe() + ": " + std::to_string(reply.integer) + " of " +
                           replicas + " replicas acknowledged the batch within " + timeout +
                           "ms; resending it");
    }
  }
}

std::vector<bool> BatchWriter::exists(const std::vector<std::string>& keys) {
  if (!router_->connected()) router_->connect();
  std::vector<RedisOp> ops;
  ops.reserve(keys.size());
  for (const auto& k : keys) ops.push_back(RedisOp{RedisOp::Kind::Exists, k, {}, 0});
  RouterCounts ignored;
  router_->execute(ops, delete_verb_, ignored);
  (void)router_->take_written();  // EXISTS writes nothing to wait for
  std::vector<bool> out;
  out.reserve(ops.size());
  for (const auto& op : ops) out.push_back(op.reply > 0);
  return out;
}

std::size_t BatchWriter::count_matching(const std::string& pattern, std::size_t limit,
                                        bool& truncated) {
  if (!router_->connected()) router_->connect();
  std::size_t count = 0;
  std::size_t pages = 0;
  truncated = false;
  for (RedisClient* master : router_->masters()) {
    std::string cursor = "0";
    do {
      const RedisReply reply =
          master->command({"SCAN", cursor, "MATCH", pattern, "COUNT", kScanCount});
      count += scan_reply_keys(reply, cursor, master->describe()).size();
      if (++pages * 1000 >= limit && cursor != "0") {
        truncated = true;
        return count;
      }
    } while (cursor != "0");
  }
  return count;
}

void BatchWriter::flush_database() {
  if (!router_->connected()) router_->connect();
  for (RedisClient* master : router_->masters()) master->command({"FLUSHDB"});
}

}  // namespace walbust
