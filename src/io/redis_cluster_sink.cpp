#include "walbust/redis_cluster_sink.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <unordered_map>

namespace walbust {
namespace {

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::vector<std::string> reply_keys(const RedisReply& scan_reply, std::string& cursor,
                                    const std::string& where) {
  if (scan_reply.type != RedisReply::Type::Array || scan_reply.elements.size() != 2) {
    throw RedisError(RedisErrorClass::Retry, "unexpected SCAN reply from " + where);
  }
  cursor = scan_reply.elements[0].str;
  std::vector<std::string> keys;
  keys.reserve(scan_reply.elements[1].elements.size());
  for (const auto& k : scan_reply.elements[1].elements) keys.push_back(k.str);
  return keys;
}

}  // namespace

struct RedisClusterSink::Op {
  enum class Kind { Delete, Set, Exists, Event };
  Kind kind = Kind::Delete;
  std::string_view key;
  std::string_view value;  // Set
  std::uint16_t slot = 0;
  std::optional<ClusterNode> ask;  // send ASKING, then the command, to this node
  bool single = false;             // never grouped with other keys (after ASK or TRYAGAIN)
  long long reply = 0;             // Exists, Event (PUBLISH's subscriber count)
  const Action* action = nullptr;  // Event: the Publish action
  const std::vector<std::string>* argv = nullptr;  // Event: its command
};

RedisClusterSink::RedisClusterSink(std::vector<ClusterNode> seeds, RedisEndpoint credentials,
                                   std::string password, std::chrono::milliseconds timeout,
                                   std::string delete_command)
    : seeds_(std::move(seeds)),
      credentials_(std::move(credentials)),
      password_(std::move(password)),
      timeout_(timeout),
      delete_command_(delete_command == "del" ? "DEL" : "UNLINK") {}

RedisClusterSink::~RedisClusterSink() = default;

std::string RedisClusterSink::describe() const {
  std::string out = "cluster ";
  for (std::size_t i = 0; i < seeds_.size(); ++i) out += (i == 0 ? "" : ",") + seeds_[i].name();
  return out;
}

void RedisClusterSink::close() {
  for (auto& [name, c] : clients_) c->close();
  map_loaded_ = false;
}

RedisClient& RedisClusterSink::client(const ClusterNode& node) {
  auto& slot = clients_[node.name()];
  if (!slot) {
    RedisEndpoint ep = credentials_;
    ep.host = node.host;
    ep.port = node.port;
    ep.socket_path.clear();
    ep.db = 0;
    slot = std::make_unique<RedisClient>(std::move(ep), password_, timeout_);
  }
  return *slot;
}

void RedisClusterSink::connect() {
  if (seeds_.empty())
    throw RedisError(RedisErrorClass::Fatal, "cluster: no valid nodes: [host:port] configured");
  if (credentials_.db != 0) {
    throw RedisError(RedisErrorClass::Fatal, "a Redis Cluster has only database 0; remove /" +
                                                 std::to_string(credentials_.db) +
                                                 " from the target's url");
  }
  refresh_slots();
}

void RedisClusterSink::ensure_map() {
  if (!map_loaded_) connect();
}

std::vector<SlotRange> RedisClusterSink::slot_ranges(const RedisReply& reply,
                                                     const std::string& asked_host) {
  if (reply.type != RedisReply::Type::Array)
    throw std::invalid_argument("CLUSTER SLOTS: not an array");
  auto node_of = [&](const RedisReply& n) {
    // [endpoint, port, id, {metadata}]; Redis 7 sends "?" or an empty endpoint when the
    // node's preferred endpoint is unknown: use the address that was asked.
    if (n.type != RedisReply::Type::Array || n.elements.size() < 2 ||
        n.elements[1].type != RedisReply::Type::Integer) {
      throw std::invalid_argument("CLUSTER SLOTS: malformed node entry");
    }
    ClusterNode node;
    node.host = n.elements[0].type == RedisReply::Type::String ? n.elements[0].str : "";
    if (node.host.empty() || node.host == "?") node.host = asked_host;
    node.port = static_cast<int>(n.elements[1].integer);
    return node;
  };
  std::vector<SlotRange> ranges;
  for (const auto& e : reply.elements) {
    if (e.type != RedisReply::Type::Array || e.elements.size() < 3 ||
        e.elements[0].type != RedisReply::Type::Integer ||
        e.elements[1].type != RedisReply::Type::Integer) {
      throw std::invalid_argument("CLUSTER SLOTS: malformed slot range");
    }
    const long long first = e.elements[0].integer;
    const long long last = e.elements[1].integer;
    if (first < 0 || last < first || last >= kClusterSlotCount) {
      throw std::invalid_argument("CLUSTER SLOTS: invalid slot range");
    }
    SlotRange r;
    r.first = static_cast<std::uint16_t>(first);
    r.last = static_cast<std::uint16_t>(last);
    r.master = node_of(e.elements[2]);
    for (std::size_t i = 3; i < e.elements.size(); ++i)
      r.replicas.push_back(node_of(e.elements[i]));
    ranges.push_back(std::move(r));
  }
  return ranges;
}

void RedisClusterSink::refresh_slots() {
  // Ask nodes that served slots first; the seeds are the fallback after a full restart.
  std::vector<ClusterNode> candidates = map_.masters();
  for (const auto& n : map_.nodes()) {
    if (std::find(candidates.begin(), candidates.end(), n) == candidates.end())
      candidates.push_back(n);
  }
  for (const auto& n : seeds_) {
    if (std::find(candidates.begin(), candidates.end(), n) == candidates.end())
      candidates.push_back(n);
  }
  std::string last_error = "no nodes configured";
  for (const auto& node : candidates) {
    try {
      RedisClient& c = client(node);
      const RedisReply reply = c.command({"CLUSTER", "SLOTS"});
      SlotMap map = SlotMap::from_ranges(slot_ranges(reply, node.host));
      if (map.empty()) {
        // A node that left the cluster, or one not yet joined, knows no slots.
        last_error = node.name() + " serves no slots";
        continue;
      }
      map_ = std::move(map);
      map_loaded_ = true;
      spdlog::debug("redis {}: slot map from {}: {} masters serve {} slots", describe(),
                    node.name(), map_.masters().size(), map_.served_slots());
      return;
    } catch (const RedisError& e) {
      if (std::string_view(e.what()).find("cluster support disabled") != std::string_view::npos) {
        throw RedisError(
            RedisErrorClass::Fatal,
            "cluster: true, but " + node.name() + " is not in cluster mode (cluster-enabled no)");
      }
      if (e.fatal()) throw;
      last_error = e.what();
    } catch (const std::invalid_argument& e) {
      last_error = node.name() + ": " + e.what();
    }
  }
  throw RedisError(RedisErrorClass::Retry,
                   "no cluster node returned the slot map (" + last_error + ")");
}

void RedisClusterSink::run(std::vector<Op>& ops, BatchResult& result) {
  struct Command {
    std::vector<std::size_t> ops;  // empty for ASKING
  };
  struct NodePlan {
    ClusterNode node;
    std::vector<RedisCommand> commands;
    std::vector<Command> info;
    std::unordered_map<std::uint16_t, std::size_t>
        open;  // slot -> delete command still taking keys
    std::vector<RedisReply> replies;
    bool failed = false;
  };
  std::vector<std::size_t> pending(ops.size());
  for (std::size_t i = 0; i < ops.size(); ++i) pending[i] = i;

  for (int round = 0; !pending.empty(); ++round) {
    if (round > kMaxRedirections) {
      throw RedisError(RedisErrorClass::Retry, "cluster: " + std::to_string(pending.size()) +
                                                   " keys still redirected after " +
                                                   std::to_string(kMaxRedirections) + " rounds");
    }
    // Plan: one pipeline per node, commands in the order of the ops.
    std::map<std::string, NodePlan> plans;
    for (const std::size_t i : pending) {
      Op& op = ops[i];
      const ClusterNode* owner = op.ask ? &*op.ask : map_.master_for(op.slot);
      if (owner == nullptr) {
        throw RedisError(RedisErrorClass::Retry,
                         "cluster: slot " + std::to_string(op.slot) +
                             " is served by no master (cluster down or being set up)");
      }
      NodePlan& plan = plans[owner->name()];
      plan.node = *owner;
      auto push = [&](RedisCommand cmd) {
        plan.commands.push_back(std::move(cmd));
        plan.info.push_back(Command{{i}});
      };
      if (op.ask) {
        // ASKING applies to the next command only, so the pair stays together.
        plan.commands.push_back(RedisCommand{"ASKING"});
        plan.info.push_back(Command{});
      }
      switch (op.kind) {
        case Op::Kind::Delete: {
          if (op.ask || op.single) {
            push(RedisCommand{delete_command_, op.key});
            break;
          }
          // Keys of one slot may share a command; keys of different slots never do.
          auto it = plan.open.find(op.slot);
          if (it != plan.open.end() && plan.commands[it->second].size() <= kKeysPerCommand) {
            plan.commands[it->second].push_back(op.key);
            plan.info[it->second].ops.push_back(i);
          } else {
            push(RedisCommand{delete_command_, op.key});
            plan.open[op.slot] = plan.commands.size() - 1;
          }
          break;
        }
        case Op::Kind::Set:
          // Later deletes of this slot go after the SET, as the actions were ordered.
          plan.open.erase(op.slot);
          push(RedisCommand{"SET", op.key, op.value});
          break;
        case Op::Kind::Exists:
          push(RedisCommand{"EXISTS", op.key});
          break;
        case Op::Kind::Event:
          plan.open.erase(op.slot);
          push(RedisCommand(op.argv->begin(), op.argv->end()));
          break;
      }
    }

    // Every pipeline is written before any reply is read, so the nodes work in parallel.
    std::string node_failure;
    auto fail = [&](NodePlan& plan, const RedisError& e) {
      if (e.fatal()) {
        close();
        throw RedisError(e);
      }
      plan.failed = true;
      if (node_failure.empty()) node_failure = e.what();
    };
    for (auto& [name, plan] : plans) {
      try {
        client(plan.node).send(plan.commands);
        result.commands += plan.commands.size();
      } catch (const RedisError& e) {
        fail(plan, e);
      }
    }
    for (auto& [name, plan] : plans) {
      if (plan.failed) continue;
      try {
        plan.replies = client(plan.node).receive(plan.commands.size());
      } catch (const RedisError& e) {
        fail(plan, e);
      }
    }
    if (!node_failure.empty()) {
      // A node is down or failing over: reload the map on the next connect().
      map_loaded_ = false;
      throw RedisError(RedisErrorClass::Retry, "cluster: " + node_failure);
    }

    std::vector<std::size_t> next;
    std::vector<Redirection> moved;
    std::string retry_error;
    bool try_again = false;
    std::size_t asks = 0;
    std::size_t try_agains = 0;
    for (auto& [name, plan] : plans) {
      for (std::size_t c = 0; c < plan.commands.size(); ++c) {
        const RedisReply& r = plan.replies[c];
        const auto& cmd_ops = plan.info[c].ops;
        if (r.type != RedisReply::Type::Error) {
          for (const std::size_t i : cmd_ops) {
            if (ops[i].kind == Op::Kind::Exists || ops[i].kind == Op::Kind::Event) {
              ops[i].reply = r.integer;
            }
          }
          if (!cmd_ops.empty() && ops[cmd_ops.front()].kind == Op::Kind::Delete &&
              r.type == RedisReply::Type::Integer) {
            result.existed += r.integer;
          }
          continue;
        }
        const RedisErrorClass kind = classify_redis_error(r.str);
        if (kind == RedisErrorClass::Fatal) {
          throw RedisError(kind, "cluster node " + plan.node.name() + ": " + r.str);
        }
        if (cmd_ops.empty()) {  // ASKING itself failed: the paired command reports it too
          continue;
        }
        if (kind == RedisErrorClass::Moved || kind == RedisErrorClass::Ask) {
          auto redirection = parse_redirection(r.str);
          if (!redirection)
            throw RedisError(RedisErrorClass::Retry, "cluster: cannot parse '" + r.str + "'");
          if (redirection->node.host.empty()) redirection->node.host = plan.node.host;
          for (const std::size_t i : cmd_ops) {
            ops[i].ask.reset();
            if (kind == RedisErrorClass::Ask) {
              // The slot is migrating and this key is not on the source any more.
              ops[i].ask = redirection->node;
              ops[i].single = true;
            }
            next.push_back(i);
          }
          if (kind == RedisErrorClass::Moved) {
            moved.push_back(*redirection);
          } else {
            ++asks;
          }
        } else if (starts_with(r.str, "TRYAGAIN")) {
          // A multi-key command in a migrating slot whose keys are split between the two
          // nodes: one key per command never gets TRYAGAIN, it is served or redirected.
          for (const std::size_t i : cmd_ops) {
            ops[i].single = true;
            next.push_back(i);
          }
          if (cmd_ops.size() == 1) try_again = true;
          ++try_agains;
        } else if (starts_with(r.str, "READONLY")) {
          // A former master that became a replica: the map is stale.
          for (const std::size_t i : cmd_ops) {
            ops[i].ask.reset();
            next.push_back(i);
          }
          moved.push_back(Redirection{Redirection::Kind::Moved, ops[cmd_ops.front()].slot, {}});
        } else if (retry_error.empty()) {
          retry_error = "cluster node " + plan.node.name() + ": " + r.str;
        }
      }
    }
    // CLUSTERDOWN, LOADING, MASTERDOWN...: back off and resend the batch.
    if (!retry_error.empty()) throw RedisError(RedisErrorClass::Retry, retry_error);
    if (!next.empty()) {
      spdlog::debug("redis {}: {} MOVED, {} ASK, {} TRYAGAIN; resending {} keys", describe(),
                    moved.size(), asks, try_agains, next.size());
    }
    if (!moved.empty()) {
      // The redirections are the freshest news; the reloaded map completes them.
      try {
        refresh_slots();
      } catch (const RedisError& e) {
        if (e.fatal()) throw;
      }
      for (const auto& m : moved) {
        if (!m.node.host.empty()) map_.assign(m.slot, m.node);
      }
    }
    if (try_again) std::this_thread::sleep_for(std::chrono::milliseconds(10 << round));
    std::sort(next.begin(), next.end());
    pending = std::move(next);
  }
}

BatchResult RedisClusterSink::apply(const std::vector<const Action*>& actions) {
  ensure_map();
  BatchResult result;
  dedup_.scan(actions);
  std::vector<Op> ops;
  ops.reserve(actions.size());
  std::vector<const std::string*> patterns;
  // Events go out after every delete of the batch: the nodes work in parallel, so only a
  // later round can follow the deletes on other nodes. XADD goes to the stream's slot;
  // PUBLISH to any node (the bus delivers it everywhere), the channel's slot owner keeps
  // one channel's messages on one connection, in order.
  std::vector<Op> events;
  std::deque<std::vector<std::string>> event_argv;
  for (std::size_t i = 0; i < actions.size(); ++i) {
    const Action* a = actions[i];
    switch (a->kind) {
      case ActionKind::Publish: {
        Op op{Op::Kind::Event, a->key, {}, key_hash_slot(a->key)};
        op.action = a;
        op.argv = &event_argv.emplace_back(publish_command(*a));
        events.push_back(std::move(op));
        break;
      }
      case ActionKind::Delete:
        if (dedup_.repeated(i)) break;
        ops.push_back(Op{Op::Kind::Delete, a->key, {}, key_hash_slot(a->key)});
        ++result.keys;
        break;
      case ActionKind::BumpVersion:
        ops.push_back(Op{Op::Kind::Set, a->key, a->value, key_hash_slot(a->key)});
        break;
      case ActionKind::DeletePattern:
        // Scanned where it stands, after the deletes gathered before it (see RedisSink).
        if (std::none_of(patterns.begin(), patterns.end(),
                         [&](const std::string* p) { return *p == a->key; })) {
          patterns.push_back(&a->key);
          run(ops, result);
          ops.clear();
          delete_patterns({&a->key}, result);
        }
        break;
    }
  }
  run(ops, result);
  run(events, result);
  for (const Op& op : events) note_event_reply(*op.action, op.reply, result);
  return result;
}

std::string RedisClusterSink::topology() {
  refresh_slots();
  std::string out;
  for (const auto& m : map_.masters()) {
    out += m.name() + " ";
    // Slots being migrated show on the node's own line as [slot->-id] or [slot-<-id].
    const RedisReply nodes = client(m).command({"CLUSTER", "NODES"});
    std::string_view text = nodes.str;
    while (!text.empty()) {
      const auto eol = text.find('\n');
      const std::string_view line = text.substr(0, eol);
      text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
      if (line.find("myself") == std::string_view::npos) continue;
      for (auto open = line.find('['); open != std::string_view::npos;
           open = line.find('[', open + 1)) {
        out += line.substr(open, line.find(']', open) - open + 1);
      }
    }
    out += ";";
  }
  for (std::size_t s = 0; s < kClusterSlotCount; ++s) {
    const ClusterNode* owner = map_.master_for(static_cast<std::uint16_t>(s));
    if (s == 0 || owner != map_.master_for(static_cast<std::uint16_t>(s - 1))) {
      out += std::to_string(s) + "=" + (owner != nullptr ? owner->name() : "-") + ",";
    }
  }
  return out;
}

void RedisClusterSink::scan_and_delete(const std::string& pattern, BatchResult& result) {
  // SCAN returns every key present for the whole scan of that node; keys are deleted
  // through the router, so one that moved to another node since is still found.
  for (const auto& master : map_.masters()) {
    std::string cursor = "0";
    do {
      RedisReply reply =
          client(master).command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
      ++result.commands;
      const std::vector<std::string> keys = reply_keys(reply, cursor, master.name());
      if (keys.empty()) continue;
      std::vector<Op> ops;
      ops.reserve(keys.size());
      for (const auto& k : keys) ops.push_back(Op{Op::Kind::Delete, k, {}, key_hash_slot(k)});
      run(ops, result);
      result.keys += keys.size();
    } while (cursor != "0");
  }
}

void RedisClusterSink::delete_patterns(const std::vector<const std::string*>& patterns,
                                       BatchResult& result) {
  // A key moving between masters while they are scanned one after the other can escape
  // every scan; a scan that saw no slot move and no migration in progress cannot miss it.
  for (int pass = 0; pass < kMaxScanPasses; ++pass) {
    const std::string before = topology();
    for (const std::string* p : patterns) scan_and_delete(*p, result);
    if (pass == 0) result.patterns += patterns.size();
    const std::string after = topology();
    if (before == after && before.find('[') == std::string::npos) return;
  }
  throw RedisError(RedisErrorClass::Retry,
                   "cluster: slots kept moving while scanning for patterns; retrying");
}

std::vector<bool> RedisClusterSink::exists(const std::vector<std::string>& keys) {
  ensure_map();
  std::vector<Op> ops;
  ops.reserve(keys.size());
  for (const auto& k : keys) ops.push_back(Op{Op::Kind::Exists, k, {}, key_hash_slot(k)});
  BatchResult ignored;
  run(ops, ignored);
  std::vector<bool> out;
  out.reserve(ops.size());
  for (const auto& op : ops) out.push_back(op.reply > 0);
  return out;
}

std::size_t RedisClusterSink::count_matching(const std::string& pattern, std::size_t limit,
                                             bool& truncated) {
  ensure_map();
  std::size_t count = 0;
  std::size_t pages = 0;
  truncated = false;
  for (const auto& master : map_.masters()) {
    std::string cursor = "0";
    do {
      RedisReply reply =
          client(master).command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
      count += reply_keys(reply, cursor, master.name()).size();
      if (++pages * 1000 >= limit && cursor != "0") {
        truncated = true;
        return count;
      }
    } while (cursor != "0");
  }
  return count;
}

void RedisClusterSink::flush_database() {
  ensure_map();
  for (const auto& master : map_.masters()) client(master).command({"FLUSHDB"});
}

}  // namespace walbust
