#include "walbust/io/cluster_router.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

#include "walbust/io/fiber.h"

namespace walbust {
namespace {

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

}  // namespace

// Where one op goes besides its slot's master.
struct ClusterRouter::Route {
  std::uint16_t slot = 0;
  std::optional<ClusterNode> ask;  // send ASKING, then the command, to this node
  bool single = false;             // never grouped with other keys (after ASK or TRYAGAIN)
};

struct ClusterRouter::NodePlan {
  ClusterNode node;
  std::vector<RedisCommand> commands;
  std::vector<std::vector<std::size_t>> ops;            // per command; empty for ASKING
  std::unordered_map<std::uint16_t, std::size_t> open;  // slot -> delete command still taking keys
  std::vector<RedisReply> replies;
  bool failed = false;
};

ClusterRouter::ClusterRouter(std::vector<ClusterNode> seeds, RedisEndpoint credentials,
                             RedisConnectionOptions options)
    : seeds_(std::move(seeds)),
      credentials_(std::move(credentials)),
      options_(std::move(options)) {}

ClusterRouter::~ClusterRouter() = default;

std::string ClusterRouter::describe() const {
  std::string out = "cluster ";
  for (std::size_t i = 0; i < seeds_.size(); ++i) out += (i == 0 ? "" : ",") + seeds_[i].name();
  return out + (options_.tls != nullptr ? " (tls)" : "");
}

void ClusterRouter::close() {
  for (auto& [name, c] : clients_) c->close();
  map_loaded_ = false;
  written_.clear();
}

RedisClient& ClusterRouter::client(const ClusterNode& node) {
  auto& slot = clients_[node.name()];
  if (!slot) {
    RedisEndpoint ep = credentials_;
    ep.host = node.host;  // also the name its TLS certificate is verified against
    ep.port = node.port;
    ep.socket_path.clear();
    ep.db = 0;
    slot = std::make_unique<RedisClient>(std::move(ep), options_);
  }
  return *slot;
}

void ClusterRouter::connect() {
  if (seeds_.empty())
    throw RedisError(RedisErrorClass::Fatal, "cluster: no valid nodes: [host:port] configured");
  if (credentials_.db != 0) {
    throw RedisError(RedisErrorClass::Fatal, "a Redis Cluster has only database 0; remove /" +
                                                 std::to_string(credentials_.db) +
                                                 " from the target's url");
  }
  refresh_slots();
}

void ClusterRouter::ensure_map() {
  if (!map_loaded_) connect();
}

std::vector<RedisClient*> ClusterRouter::masters() {
  ensure_map();
  std::vector<RedisClient*> out;
  for (const auto& m : map_.masters()) out.push_back(&client(m));
  return out;
}

std::vector<RedisClient*> ClusterRouter::take_written() {
  std::sort(written_.begin(), written_.end());
  written_.erase(std::unique(written_.begin(), written_.end()), written_.end());
  std::vector<RedisClient*> out;
  for (const auto& name : written_) {
    if (auto it = clients_.find(name); it != clients_.end()) out.push_back(it->second.get());
  }
  written_.clear();
  return out;
}

std::vector<SlotRange> ClusterRouter::slot_ranges(const RedisReply& reply,
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

void ClusterRouter::refresh_slots() {
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

std::map<std::string, ClusterRouter::NodePlan> ClusterRouter::plan(
    std::vector<RedisOp>& ops, std::vector<Route>& routes, const std::vector<std::size_t>& pending,
    std::string_view delete_verb) {
  // One pipeline per node, commands in the order of the ops.
  std::map<std::string, NodePlan> plans;
  for (const std::size_t i : pending) {
    const RedisOp& op = ops[i];
    const Route& route = routes[i];
    const ClusterNode* owner = route.ask ? &*route.ask : map_.master_for(route.slot);
    if (owner == nullptr) {
      throw RedisError(RedisErrorClass::Retry,
                       "cluster: slot " + std::to_string(route.slot) +
                           " is served by no master (cluster down or being set up)");
    }
    NodePlan& plan = plans[owner->name()];
    plan.node = *owner;
    auto push = [&](RedisCommand cmd) {
      plan.commands.push_back(std::move(cmd));
      plan.ops.push_back({i});
    };
    if (route.ask) {
      // ASKING applies to the next command only, so the pair stays together.
      plan.commands.push_back(RedisCommand{"ASKING"});
      plan.ops.emplace_back();
    }
    switch (op.kind) {
      case RedisOp::Kind::Delete: {
        if (route.ask || route.single) {
          push(RedisCommand{delete_verb, op.key});
          break;
        }
        // Keys of one slot may share a command; keys of different slots never do.
        auto it = plan.open.find(route.slot);
        if (it != plan.open.end() && plan.commands[it->second].size() <= kKeysPerCommand) {
          plan.commands[it->second].push_back(op.key);
          plan.ops[it->second].push_back(i);
        } else {
          push(RedisCommand{delete_verb, op.key});
          plan.open[route.slot] = plan.commands.size() - 1;
        }
        break;
      }
      case RedisOp::Kind::Set:
        // Later deletes of this slot go after the SET, as the ops were ordered.
        plan.open.erase(route.slot);
        push(RedisCommand{"SET", op.key, op.value});
        break;
      case RedisOp::Kind::Exists:
        push(RedisCommand{"EXISTS", op.key});
        break;
      case RedisOp::Kind::Command:
        // XADD goes to its stream's slot; PUBLISH to its channel name's slot owner, which
        // keeps one channel's messages on one connection, in order (any node would do).
        plan.open.erase(route.slot);
        push(RedisCommand(op.argv->begin(), op.argv->end()));
        break;
    }
  }
  return plans;
}

void ClusterRouter::transmit(std::map<std::string, NodePlan>& plans, RouterCounts& counts) {
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
      counts.commands += plan.commands.size();
      written_.push_back(name);
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
}

// What one round's error replies ask for.
struct ClusterRouter::Settlement {
  std::vector<std::size_t> next;  // ops to send again
  std::vector<Redirection> moved;
  std::string retry_error;  // the first error that needs a backoff
  bool try_again = false;
  std::size_t asks = 0;
  std::size_t try_agains = 0;
};

void ClusterRouter::redirect(const NodePlan& plan, const RedisReply& r,
                             const std::vector<std::size_t>& cmd_ops, std::vector<Route>& routes,
                             Settlement& out) {
  const RedisErrorClass kind = classify_redis_error(r.str);
  if (kind == RedisErrorClass::Moved || kind == RedisErrorClass::Ask) {
    auto redirection = parse_redirection(r.str);
    if (!redirection)
      throw RedisError(RedisErrorClass::Retry, "cluster: cannot parse '" + r.str + "'");
    if (redirection->node.host.empty()) redirection->node.host = plan.node.host;
    for (const std::size_t i : cmd_ops) {
      routes[i].ask.reset();
      if (kind == RedisErrorClass::Ask) {
        // The slot is migrating and this key is not on the source any more.
        routes[i].ask = redirection->node;
        routes[i].single = true;
      }
      out.next.push_back(i);
    }
    if (kind == RedisErrorClass::Moved) {
      out.moved.push_back(*redirection);
    } else {
      ++out.asks;
    }
  } else if (starts_with(r.str, "TRYAGAIN")) {
    // A multi-key command in a migrating slot whose keys are split between the two
    // nodes: one key per command never gets TRYAGAIN, it is served or redirected.
    for (const std::size_t i : cmd_ops) {
      routes[i].single = true;
      out.next.push_back(i);
    }
    if (cmd_ops.size() == 1) out.try_again = true;
    ++out.try_agains;
  } else if (starts_with(r.str, "READONLY")) {
    // A former master that became a replica: the map is stale.
    for (const std::size_t i : cmd_ops) {
      routes[i].ask.reset();
      out.next.push_back(i);
    }
    out.moved.push_back(Redirection{Redirection::Kind::Moved, routes[cmd_ops.front()].slot, {}});
  } else if (out.retry_error.empty()) {
    out.retry_error = "cluster node " + plan.node.name() + ": " + r.str;
  }
}

std::vector<std::size_t> ClusterRouter::settle(std::map<std::string, NodePlan>& plans,
                                               std::vector<RedisOp>& ops,
                                               std::vector<Route>& routes, RouterCounts& counts,
                                               int round) {
  Settlement out;
  for (auto& [name, plan] : plans) {
    for (std::size_t c = 0; c < plan.commands.size(); ++c) {
      const RedisReply& r = plan.replies[c];
      const auto& cmd_ops = plan.ops[c];
      if (r.type != RedisReply::Type::Error) {
        if (cmd_ops.empty() || r.type != RedisReply::Type::Integer) continue;
        ops[cmd_ops.front()].reply = r.integer;
        if (ops[cmd_ops.front()].kind == RedisOp::Kind::Delete) counts.existed += r.integer;
        continue;
      }
      if (classify_redis_error(r.str) == RedisErrorClass::Fatal) {
        throw RedisError(RedisErrorClass::Fatal, "cluster node " + plan.node.name() + ": " + r.str);
      }
      if (cmd_ops.empty()) continue;  // ASKING itself failed: the paired command reports it too
      redirect(plan, r, cmd_ops, routes, out);
    }
  }
  // CLUSTERDOWN, LOADING, MASTERDOWN...: back off and resend the batch.
  if (!out.retry_error.empty()) throw RedisError(RedisErrorClass::Retry, out.retry_error);
  if (!out.next.empty()) {
    spdlog::debug("redis {}: {} MOVED, {} ASK, {} TRYAGAIN; resending {} keys", describe(),
                  out.moved.size(), out.asks, out.try_agains, out.next.size());
  }
  if (!out.moved.empty()) {
    // The redirections are the freshest news; the reloaded map completes them.
    try {
      refresh_slots();
    } catch (const RedisError& e) {
      if (e.fatal()) throw;
    }
    for (const auto& m : out.moved) {
      if (!m.node.host.empty()) map_.assign(m.slot, m.node);
    }
  }
  if (out.try_again) (void)pause_for(std::chrono::milliseconds(10 << round));
  std::sort(out.next.begin(), out.next.end());
  return out.next;
}

void ClusterRouter::execute(std::vector<RedisOp>& ops, std::string_view delete_verb,
                            RouterCounts& counts) {
  if (ops.empty()) return;
  ensure_map();
  std::vector<Route> routes(ops.size());
  std::vector<std::size_t> pending(ops.size());
  for (std::size_t i = 0; i < ops.size(); ++i) {
    routes[i].slot = key_hash_slot(ops[i].key);
    pending[i] = i;
  }
  for (int round = 0; !pending.empty(); ++round) {
    if (round > kMaxRedirections) {
      throw RedisError(RedisErrorClass::Retry, "cluster: " + std::to_string(pending.size()) +
                                                   " keys still redirected after " +
                                                   std::to_string(kMaxRedirections) + " rounds");
    }
    auto plans = plan(ops, routes, pending, delete_verb);
    transmit(plans, counts);
    pending = settle(plans, ops, routes, counts, round);
  }
}

std::string ClusterRouter::topology() {
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

}  // namespace walbust
