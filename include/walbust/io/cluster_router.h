#pragma once
// The router of a Redis Cluster target. Keys are routed by hash slot to their master, one
// pipeline per master; the pipelines to all masters are in flight together. Redirections
// are followed within one execute(): MOVED updates the slot map (and reloads it with
// CLUSTER SLOTS), ASK sends `ASKING` and the command to the importing node for that key
// only. Multi-key commands only ever hold keys of one slot, so CROSSSLOT cannot occur.
// Unreachable nodes, TRYAGAIN that does not settle, CLUSTERDOWN and too many redirections
// throw RedisError(Retry): the sink worker resends the whole batch with backoff after
// reloading the slot map, which is how a failover is followed. Over TLS each node is
// verified against the name it is reached by (a seed, or what CLUSTER SLOTS gives).
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "walbust/core/cluster_slots.h"
#include "walbust/io/redis_router.h"

namespace walbust {

class ClusterRouter final : public RedisRouter {
 public:
  // `credentials` carries the user and password (from the target's url, if any); the
  // nodes come from `seeds` and the slot map.
  ClusterRouter(std::vector<ClusterNode> seeds, RedisEndpoint credentials,
                RedisConnectionOptions options);
  ~ClusterRouter() override;

  // Loads the slot map from the first node that answers (known masters, then seeds).
  void connect() override;
  // Closes every node connection and forgets the slot map: the next connect() reloads it.
  void close() override;
  [[nodiscard]] bool connected() const override { return map_loaded_; }
  [[nodiscard]] std::string describe() const override;

  void execute(std::vector<RedisOp>& ops, std::string_view delete_verb,
               RouterCounts& counts) override;
  [[nodiscard]] std::vector<RedisClient*> masters() override;
  [[nodiscard]] std::vector<RedisClient*> take_written() override;
  // Slot owners and migrations in progress, as each master's CLUSTER NODES shows them.
  [[nodiscard]] std::string topology() override;

  // The slot ranges of a CLUSTER SLOTS reply. A master or replica without an endpoint
  // (empty or "?") is the node the command was sent to: `asked_host`. Throws
  // std::invalid_argument on a malformed reply.
  [[nodiscard]] static std::vector<SlotRange> slot_ranges(const RedisReply& reply,
                                                          const std::string& asked_host);

  [[nodiscard]] const SlotMap& slot_map() const { return map_; }

  // Rounds of redirections followed within one execute() before giving up with Retry.
  static constexpr int kMaxRedirections = 5;

 private:
  struct Route;
  struct NodePlan;
  struct Settlement;
  RedisClient& client(const ClusterNode& node);
  void refresh_slots();
  void ensure_map();
  std::map<std::string, NodePlan> plan(std::vector<RedisOp>& ops, std::vector<Route>& routes,
                                       const std::vector<std::size_t>& pending,
                                       std::string_view delete_verb);
  void transmit(std::map<std::string, NodePlan>& plans, RouterCounts& counts);
  // Follows one error reply of a command holding `cmd_ops` (MOVED, ASK, TRYAGAIN, READONLY).
  void redirect(const NodePlan& plan, const RedisReply& reply,
                const std::vector<std::size_t>& cmd_ops, std::vector<Route>& routes,
                Settlement& out);
  // Reads the replies; returns the ops to send again (redirected).
  std::vector<std::size_t> settle(std::map<std::string, NodePlan>& plans, std::vector<RedisOp>& ops,
                                  std::vector<Route>& routes, RouterCounts& counts, int round);

  std::vector<ClusterNode> seeds_;
  RedisEndpoint credentials_;
  RedisConnectionOptions options_;
  SlotMap map_;
  bool map_loaded_ = false;
  std::map<std::string, std::unique_ptr<RedisClient>> clients_;  // by "host:port"
  std::vector<std::string> written_;                             // node names since take_written()
};

}  // namespace walbust
