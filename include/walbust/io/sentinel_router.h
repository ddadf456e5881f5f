#pragma once
// The router of a Redis Sentinel target: the master is asked of the sentinels in order
// (SENTINEL get-master-addr-by-name) and confirmed with ROLE, because a restarted old
// master calls itself master for a while before the sentinels demote it: only the address
// a sentinel names, confirmed by the server itself, is used. On a lost connection,
// READONLY, LOADING or MASTERDOWN the caller closes and reconnects, which asks again, and
// resends the unconfirmed batch to the new master. After each confirmed batch the sentinel
// is asked again: a batch a demoted master confirmed is not acknowledged but resent.
#include <memory>
#include <string>
#include <vector>

#include "walbust/core/cluster_slots.h"
#include "walbust/io/redis_router.h"

namespace walbust {

class SentinelRouter final : public RedisRouter {
 public:
  // `sentinels` in the order they are asked, reached with `sentinel_options` (their own
  // password); the master with `data` (user, password, db) and `data_options`.
  SentinelRouter(std::string master_name, std::vector<ClusterNode> sentinels,
                 RedisConnectionOptions sentinel_options, RedisEndpoint data,
                 RedisConnectionOptions data_options);
  ~SentinelRouter() override;

  void connect() override;
  void close() override;
  [[nodiscard]] bool connected() const override { return master_ && master_->connected(); }
  [[nodiscard]] std::string describe() const override;
  [[nodiscard]] std::string current_master() const override;

  void execute(std::vector<RedisOp>& ops, std::string_view delete_verb,
               RouterCounts& counts) override;
  [[nodiscard]] std::vector<RedisClient*> masters() override;
  [[nodiscard]] std::vector<RedisClient*> take_written() override;
  void check_master() override;

  // The master a get-master-addr-by-name reply names; nullopt for a nil reply (the
  // sentinel does not know the name, or is failing over). Throws RedisError(Retry) on
  // another shape.
  [[nodiscard]] static std::optional<ClusterNode> named_master(const RedisReply& reply);

 private:
  // Asks the sentinels in order, from the one that answered last; nullopt with `why`
  // when none named a master.
  std::optional<ClusterNode> ask_sentinels(std::string& why);
  void connect_master(const ClusterNode& node);

  std::string master_name_;
  std::vector<ClusterNode> sentinels_;
  RedisConnectionOptions sentinel_options_;
  RedisEndpoint data_;
  RedisConnectionOptions data_options_;
  std::vector<std::unique_ptr<RedisClient>> sentinel_clients_;
  std::size_t preferred_ = 0;  // the sentinel that answered last
  std::optional<ClusterNode> master_node_;
  std::unique_ptr<RedisClient> master_;
  bool written_ = false;
};

}  // namespace walbust
