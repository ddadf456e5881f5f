#pragma once
// Where each key of a target goes: a router maps keys to connections and sends what it is
// given, nothing more. The batch semantics (deduplication, ordering, patterns, the delete
// command, WAIT) belong to the BatchWriter, once for every topology:
//  - SingleRouter: one server (redis://, rediss://, unix://);
//  - ClusterRouter: Redis Cluster, by hash slot, following MOVED/ASK;
//  - SentinelRouter: the master the sentinels name, confirmed with ROLE.
// Failures throw RedisError: Retry (the caller closes, backs off and resends the whole
// batch; connect() then rediscovers the topology) or Fatal (configuration).
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "walbust/io/redis_client.h"

namespace walbust {

struct RedisOp {
  // Command: a whole command of its own (an event's PUBLISH or XADD), routed by `key`.
  enum class Kind { Delete, Set, Exists, Command };
  Kind kind = Kind::Delete;
  std::string_view key;
  std::string_view value;  // Set
  long long reply = 0;     // Exists, Command: an integer reply; Delete: keys removed by its command
  const std::vector<std::string>* argv = nullptr;  // Command
};

struct RouterCounts {
  long long existed = 0;     // sum of the delete commands' replies
  std::size_t commands = 0;  // commands sent, redirections included
};

class RedisRouter {
 public:
  virtual ~RedisRouter() = default;

  // Finds the servers (slot map, sentinel discovery) and connects. Throws RedisError.
  virtual void connect() = 0;
  // Closes every connection; the next connect() discovers the topology again.
  virtual void close() = 0;
  [[nodiscard]] virtual bool connected() const = 0;
  // "127.0.0.1:6379/0", "cluster a:1,b:2", "sentinel mymaster": never a password.
  [[nodiscard]] virtual std::string describe() const = 0;
  // The master in use ("host:port"), or "" when there is no single one (cluster).
  [[nodiscard]] virtual std::string current_master() const { return ""; }

  // Sends the ops in their order. Consecutive deletes going to one node (one slot, in a
  // cluster) share a `delete_verb` command of at most kKeysPerCommand keys; a Set or an
  // Exists is a command of its own. Every reply is checked.
  virtual void execute(std::vector<RedisOp>& ops, std::string_view delete_verb,
                       RouterCounts& counts) = 0;

  // The connections that hold data: the server, or every cluster master. For SCAN.
  [[nodiscard]] virtual std::vector<RedisClient*> masters() = 0;
  // The connections written to since the last call, each once: WAIT is asked of them.
  [[nodiscard]] virtual std::vector<RedisClient*> take_written() = 0;
  // Who serves which data, for telling whether a multi-node scan saw a stable topology;
  // "" when it cannot change under a scan. A '[' marks a migration in progress.
  [[nodiscard]] virtual std::string topology() { return ""; }
  // After a batch was confirmed: throws Retry when the connection that confirmed it is no
  // longer the master the topology names (sentinel), so that nothing is acknowledged then.
  virtual void check_master() {}

  static constexpr std::size_t kKeysPerCommand = 256;
};

// Throws the first error reply of `replies`: Fatal ones first, then the others with their
// class; `what` and `client` name the commands and the server in the message (the server's
// name is formatted only then: this runs after every pipeline).
void throw_reply_errors(const std::vector<RedisReply>& replies, const char* what,
                        const RedisClient& client);

// A pipeline for one connection: consecutive Delete ops share a command of at most
// RedisRouter::kKeysPerCommand keys; each Set, Exists and Command is one command. `first_op[c]` is
// the index of command c's first op (its ops run to the next command's first op).
struct OpPipeline {
  std::vector<RedisCommand> commands;
  std::vector<std::size_t> first_op;
};
[[nodiscard]] OpPipeline plan_pipeline(const std::vector<RedisOp>& ops,
                                       std::string_view delete_verb);

// Runs `ops` as one pipeline on one connection and records the replies in the ops and
// `counts`: what SingleRouter and SentinelRouter do with their one master.
void execute_on(RedisClient& client, std::vector<RedisOp>& ops, std::string_view delete_verb,
                RouterCounts& counts);

// One server: redis://, rediss://, valkey://, valkeys:// or unix://.
class SingleRouter final : public RedisRouter {
 public:
  SingleRouter(RedisEndpoint endpoint, RedisConnectionOptions options);

  void connect() override { client_.connect(); }
  void close() override { client_.close(); }
  [[nodiscard]] bool connected() const override { return client_.connected(); }
  [[nodiscard]] std::string describe() const override { return client_.describe(); }
  void execute(std::vector<RedisOp>& ops, std::string_view delete_verb,
               RouterCounts& counts) override;
  [[nodiscard]] std::vector<RedisClient*> masters() override { return {&client_}; }
  [[nodiscard]] std::vector<RedisClient*> take_written() override;

 private:
  RedisClient client_;
  bool written_ = false;
};

}  // namespace walbust
