#pragma once
// The KeySink of every Redis target, whatever its topology: the one place that owns the
// batch semantics, while a RedisRouter only maps keys to connections.
//  - Deletes are deduplicated within a batch and sent with the configured command (UNLINK
//    or DEL), many keys per command, in the order of the actions.
//  - A version bump (SET) stays ordered after the deletes before it.
//  - A pattern is scanned where it stands: what was gathered before it is confirmed first,
//    then every master is scanned (SCAN guarantees every key present for the whole scan is
//    returned) and the keys found are deleted through the router, so a key that moved to
//    another node meanwhile is still found. A scan that saw the topology change is repeated.
//  - Events (PUBLISH, XADD) go in one round after every delete of the batch was confirmed:
//    with several nodes working in parallel, only a later round can follow deletes made on
//    other nodes. Each event still follows its own transaction's deletes, in commit order.
//  - With wait.replicas > 0, a batch counts as confirmed only after WAIT on every master
//    written to reports that many replicas; otherwise it throws Retry and is resent.
// Either everything was confirmed or apply() throws; deletes and SETs are idempotent, so
// the caller resends the whole batch on Retry.
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "walbust/core/batch_dedup.h"
#include "walbust/io/config.h"
#include "walbust/io/key_sink.h"
#include "walbust/io/redis_router.h"

namespace walbust {

class BatchWriter final : public KeySink {
 public:
  BatchWriter(std::unique_ptr<RedisRouter> router, const std::string& delete_command,
              RedisWaitSettings wait);

  void connect() override { router_->connect(); }
  void close() override { router_->close(); }
  [[nodiscard]] bool connected() const override { return router_->connected(); }
  [[nodiscard]] std::string describe() const override { return router_->describe(); }
  [[nodiscard]] std::string current_master() const override { return router_->current_master(); }

  BatchResult apply(const std::vector<const Action*>& actions) override;
  [[nodiscard]] std::vector<bool> exists(const std::vector<std::string>& keys) override;
  [[nodiscard]] std::size_t count_matching(const std::string& pattern, std::size_t limit,
                                           bool& truncated) override;
  void flush_database() override;
  [[nodiscard]] std::vector<RedisClient*> masters() override { return router_->masters(); }

  [[nodiscard]] RedisRouter& router() { return *router_; }

  // A pattern scan is repeated while the topology moves under it, at most this many times.
  static constexpr int kMaxScanPasses = 3;
  static constexpr const char* kScanCount = "1000";

 private:
  void send(BatchResult& result);
  void send_events(BatchResult& result);
  void delete_pattern(const std::string& pattern, BatchResult& result);
  void scan_and_delete(RedisClient& master, const std::string& pattern, BatchResult& result);
  void wait_for_replicas();

  std::unique_ptr<RedisRouter> router_;
  std::string delete_verb_;  // "UNLINK" or "DEL"
  RedisWaitSettings wait_;
  DeleteDeduplicator dedup_;
  std::vector<RedisOp> ops_;                         // reused from batch to batch
  std::vector<const Action*> events_;                // the batch's Publish actions, in order
  std::deque<std::vector<std::string>> event_argv_;  // their commands (stable addresses)
};

// The keys of a SCAN reply, and the next cursor. Throws RedisError(Retry) on another shape.
[[nodiscard]] std::vector<std::string_view> scan_reply_keys(const RedisReply& reply,
                                                            std::string& cursor,
                                                            const std::string& where);

}  // namespace walbust
