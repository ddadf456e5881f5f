#pragma once
// Applies a batch of actions to one Redis: deduplicates keys, pipelines UNLINK/DEL (many
// keys per command) and SET for version bumps in one round trip, then expands patterns
// with SCAN. Every reply is read and checked; any failure throws RedisError and the
// caller resends the whole batch (deletes are idempotent).
#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "walbust/redis_client.h"
#include "walbust/rules.h"

namespace walbust {

struct BatchResult {
  std::size_t keys = 0;         // distinct keys sent for deletion (patterns expanded)
  long long existed = 0;        // keys Redis reported as removed
  std::size_t commands = 0;     // commands sent
  std::size_t patterns = 0;     // patterns scanned
};

class RedisSink {
 public:
  RedisSink(RedisClient& client, std::string delete_command);

  // Throws RedisError (Retry or Fatal). Error replies inside the pipeline are classified;
  // the first non-retryable one wins.
  BatchResult apply(const std::vector<const Action*>& actions);

  // Read-only: how many of `keys` exist (one EXISTS reply each, pipelined).
  [[nodiscard]] std::vector<bool> exists(const std::vector<std::string>& keys);
  // Read-only: how many keys match a pattern, scanning at most `limit` keys.
  [[nodiscard]] std::size_t count_matching(const std::string& pattern, std::size_t limit, bool& truncated);

  static constexpr std::size_t kKeysPerCommand = 256;

 private:
  void check_replies(const std::vector<RedisReply>& replies, const char* what) const;
  std::size_t delete_pattern(const std::string& pattern, BatchResult& result);

  RedisClient& client_;
  std::string delete_command_;  // "UNLINK" or "DEL"
};

}  // namespace walbust
