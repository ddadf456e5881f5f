#include "walbust/redis_sink.h"

#include <algorithm>
#include <deque>
#include <string_view>

#include "walbust/config.h"
#include "walbust/events.h"
#include "walbust/redis_cluster_sink.h"

namespace walbust {

RedisSink::RedisSink(RedisEndpoint endpoint, std::string password, std::chrono::milliseconds timeout,
                     std::string delete_command)
    : client_(std::move(endpoint), std::move(password), timeout),
      delete_command_(delete_command == "del" ? "DEL" : "UNLINK") {}

std::vector<std::string> publish_command(const Action& action) {
  return event_command(*action.event);
}

void note_event_reply(const Action& action, long long integer_reply, BatchResult& result) {
  const PublishDestination& d = action.event->destination;
  result.events.push_back(
      EventResult{d.kind, d.name, d.kind == PublishKind::Channel ? integer_reply : -1});
}

void RedisSink::flush_database() { client_.command({"FLUSHDB"}); }

void RedisSink::check_replies(const std::vector<RedisReply>& replies, const char* what) const {
  const RedisReply* first_error = nullptr;
  for (const auto& r : replies) {
    if (r.type != RedisReply::Type::Error) continue;
    if (classify_redis_error(r.str) == RedisErrorClass::Fatal) {
      throw RedisError(RedisErrorClass::Fatal, std::string(what) + " failed on " +
                                                   client_.endpoint().describe() + ": " + r.str);
    }
    if (first_error == nullptr) first_error = &r;
  }
  if (first_error != nullptr) {
    throw RedisError(classify_redis_error(first_error->str),
                     std::string(what) + " failed on " + client_.endpoint().describe() + ": " + first_error->str);
  }
}

BatchResult RedisSink::apply(const std::vector<const Action*>& actions) {
  BatchResult result;
  dedup_.scan(actions);
  std::vector<RedisCommand> commands;
  std::vector<bool> is_delete;
  std::vector<const Action*> events;  // aligned with commands: the Publish action, or null
  std::deque<std::vector<std::string>> event_argv;  // stable storage for their arguments
  std::vector<const std::string*> patterns;
  RedisCommand pending{delete_command_};
  auto flush_deletes = [&] {
    if (pending.size() > 1) {
      commands.push_back(std::move(pending));
      is_delete.push_back(true);
      events.push_back(nullptr);
    }
    pending = RedisCommand{delete_command_};
  };
  // Sends what was gathered and waits for Redis to confirm it.
  auto send = [&] {
    flush_deletes();
    if (commands.empty()) return;
    const auto replies = client_.pipeline(commands);
    result.commands += commands.size();
    check_replies(replies, "delete pipeline");
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (is_delete[i] && replies[i].type == RedisReply::Type::Integer) result.existed += replies[i].integer;
      if (events[i] != nullptr) note_event_reply(*events[i], replies[i].integer, result);
    }
    commands.clear();
    is_delete.clear();
    events.clear();
    event_argv.clear();
  };
  for (std::size_t i = 0; i < actions.size(); ++i) {
    const Action* a = actions[i];
    switch (a->kind) {
      case ActionKind::Delete:
        if (dedup_.repeated(i)) break;
        pending.push_back(a->key);
        ++result.keys;
        if (pending.size() > kKeysPerCommand) flush_deletes();
        break;
      case ActionKind::BumpVersion:
        // Ordered after earlier deletes of the batch; SET is idempotent on replay.
        flush_deletes();
        commands.push_back(RedisCommand{"SET", a->key, a->value});
        is_delete.push_back(false);
        events.push_back(nullptr);
        break;
      case ActionKind::Publish: {
        // In the pipeline after the deletes before it: Redis runs them first.
        flush_deletes();
        const auto& argv = event_argv.emplace_back(publish_command(*a));
        commands.emplace_back(argv.begin(), argv.end());
        is_delete.push_back(false);
        events.push_back(a);
        break;
      }
      case ActionKind::DeletePattern:
        // Scanned where it stands: what earlier transactions delete goes first, and no
        // later transaction's delete is visible before this pattern's keys are gone.
        // Once per batch: every scan runs after all of the batch's commits anyway.
        if (std::none_of(patterns.begin(), patterns.end(), [&](const std::string* p) { return *p == a->key; })) {
          patterns.push_back(&a->key);
          send();
          delete_pattern(a->key, result);
          ++result.patterns;
        }
        break;
    }
  }
  send();
  return result;
}

void RedisSink::delete_pattern(const std::string& pattern, BatchResult& result) {
  // SCAN guarantees that every key present for the whole scan is returned at least once,
  // which is exactly the guarantee invalidation needs.
  std::string cursor = "0";
  do {
    RedisReply reply = client_.command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
    ++result.commands;
    if (reply.type != RedisReply::Type::Array || reply.elements.size() != 2) {
      throw RedisError(RedisErrorClass::Retry, "unexpected SCAN reply from " + client_.endpoint().describe());
    }
    cursor = reply.elements[0].str;
    const auto& keys = reply.elements[1].elements;
    if (!keys.empty()) {
      RedisCommand del{delete_command_};
      for (const auto& k : keys) del.push_back(k.str);
      const RedisReply r = client_.command(del);
      ++result.commands;
      result.keys += keys.size();
      result.existed += r.integer;
    }
  } while (cursor != "0");
}

std::vector<bool> RedisSink::exists(const std::vector<std::string>& keys) {
  std::vector<RedisCommand> commands;
  commands.reserve(keys.size());
  for (const auto& k : keys) commands.push_back(RedisCommand{"EXISTS", k});
  const auto replies = client_.pipeline(commands);
  check_replies(replies, "EXISTS");
  std::vector<bool> out;
  out.reserve(replies.size());
  for (const auto& r : replies) out.push_back(r.type == RedisReply::Type::Integer && r.integer > 0);
  return out;
}

std::size_t RedisSink::count_matching(const std::string& pattern, std::size_t limit, bool& truncated) {
  std::string cursor = "0";
  std::size_t count = 0;
  std::size_t scanned_pages = 0;
  truncated = false;
  do {
    RedisReply reply = client_.command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
    if (reply.type != RedisReply::Type::Array || reply.elements.size() != 2) {
      throw RedisError(RedisErrorClass::Retry, "unexpected SCAN reply from " + client_.endpoint().describe());
    }
    cursor = reply.elements[0].str;
    count += reply.elements[1].elements.size();
    ++scanned_pages;
    if (scanned_pages * 1000 >= limit && cursor != "0") {
      truncated = true;
      break;
    }
  } while (cursor != "0");
  return count;
}

std::unique_ptr<KeySink> make_key_sink(const RedisSettings& settings, const std::string& password) {
  if (settings.cluster) {
    // An unparsable entry is left out; with none left, connect() fails as a configuration error.
    std::vector<ClusterNode> seeds;
    for (const auto& n : settings.nodes) {
      if (auto node = parse_cluster_node(n); node && !node->host.empty()) seeds.push_back(std::move(*node));
    }
    return std::make_unique<RedisClusterSink>(std::move(seeds), settings.endpoint, password, settings.timeout,
                                              settings.delete_command);
  }
  return std::make_unique<RedisSink>(settings.endpoint, password, settings.timeout, settings.delete_command);
}

}  // namespace walbust
