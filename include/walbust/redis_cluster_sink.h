#pragma once
// A KeySink on a Redis Cluster. Keys are routed by hash slot to their master, with one
// pipeline per master and batch; the pipelines to all masters are in flight together.
// Redirections are followed within a batch: MOVED updates the slot map (and reloads it
// with CLUSTER SLOTS), ASK sends `ASKING` and the command to the importing node for that
// key only. Multi-key commands only ever hold keys of one slot, so CROSSSLOT cannot occur.
// Patterns are scanned on every master. Unreachable nodes, TRYAGAIN that does not settle,
// CLUSTERDOWN and too many redirections throw RedisError(Retry): the sink worker resends
// the whole batch with backoff (deletes and version SETs are idempotent), after reloading
// the slot map, which is how a failover is followed.
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "walbust/cluster_slots.h"
#include "walbust/batch_dedup.h"
#include "walbust/key_sink.h"
#include "walbust/redis_client.h"

namespace walbust {

class RedisClusterSink final : public KeySink {
 public:
  // `credentials` carries the user and password (from the target's url); its host, port
  // and database are not used: the nodes come from `seeds` and the slot map.
  RedisClusterSink(std::vector<ClusterNode> seeds, RedisEndpoint credentials, std::string password,
                   std::chrono::milliseconds timeout, std::string delete_command);
  ~RedisClusterSink() override;

  // Loads the slot map from the first node that answers (known masters, then seeds).
  void connect() override;
  // Closes every node connection and forgets the slot map: the next connect() reloads it.
  void close() override;
  [[nodiscard]] bool connected() const override { return map_loaded_; }
  [[nodiscard]] std::string describe() const override;

  BatchResult apply(const std::vector<const Action*>& actions) override;
  [[nodiscard]] std::vector<bool> exists(const std::vector<std::string>& keys) override;
  [[nodiscard]] std::size_t count_matching(const std::string& pattern, std::size_t limit,
                                           bool& truncated) override;
  void flush_database() override;

  // The slot ranges of a CLUSTER SLOTS reply. A master or replica without an endpoint
  // (empty or "?") is the node the command was sent to: `asked_host`. Throws
  // std::invalid_argument on a malformed reply.
  [[nodiscard]] static std::vector<SlotRange> slot_ranges(const RedisReply& reply,
                                                          const std::string& asked_host);

  [[nodiscard]] const SlotMap& slot_map() const { return map_; }

  static constexpr std::size_t kKeysPerCommand = 256;
  // Rounds of redirections followed within one apply() before giving up with Retry.
  static constexpr int kMaxRedirections = 5;
  // A pattern scan is repeated while slots move under it, at most this many times.
  static constexpr int kMaxScanPasses = 3;

 private:
  struct Op;
  RedisClient& client(const ClusterNode& node);
  void refresh_slots();
  void ensure_map();
  // Sends the ops to the nodes owning their slots, following redirections.
  void run(std::vector<Op>& ops, BatchResult& result);
  // Slot owners and in-progress slot migrations, to tell whether a scan saw a stable cluster.
  [[nodiscard]] std::string topology();
  void scan_and_delete(const std::string& pattern, BatchResult& result);
  void delete_patterns(const std::vector<const std::string*>& patterns, BatchResult& result);

  std::vector<ClusterNode> seeds_;
  RedisEndpoint credentials_;
  std::string password_;
  std::chrono::milliseconds timeout_;
  std::string delete_command_;  // "UNLINK" or "DEL"
  SlotMap map_;
  DeleteDeduplicator dedup_;
  bool map_loaded_ = false;
  std::map<std::string, std::unique_ptr<RedisClient>> clients_;  // by "host:port"
};

}  // namespace walbust
