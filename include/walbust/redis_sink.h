#pragma once
// A KeySink on one Redis server: deduplicates keys, pipelines UNLINK/DEL (many keys per
// command) and SET for version bumps in one round trip, then expands patterns with
// SCAN. Every reply is read and checked.
#include <chrono>
#include <string>
#include <vector>

#include "walbust/batch_dedup.h"
#include "walbust/key_sink.h"
#include "walbust/redis_client.h"

namespace walbust {

class RedisSink final : public KeySink {
 public:
  RedisSink(RedisEndpoint endpoint, std::string password, std::chrono::milliseconds timeout,
            std::string delete_command);

  void connect() override { client_.connect(); }
  void close() override { client_.close(); }
  [[nodiscard]] bool connected() const override { return client_.connected(); }
  [[nodiscard]] std::string describe() const override { return client_.endpoint().describe(); }

  BatchResult apply(const std::vector<const Action*>& actions) override;
  [[nodiscard]] std::vector<bool> exists(const std::vector<std::string>& keys) override;
  [[nodiscard]] std::size_t count_matching(const std::string& pattern, std::size_t limit, bool& truncated) override;
  void flush_database() override;

  static constexpr std::size_t kKeysPerCommand = 256;

 private:
  void check_replies(const std::vector<RedisReply>& replies, const char* what) const;
  void delete_pattern(const std::string& pattern, BatchResult& result);

  RedisClient client_;
  std::string delete_command_;  // "UNLINK" or "DEL"
  DeleteDeduplicator dedup_;
};

}  // namespace walbust
