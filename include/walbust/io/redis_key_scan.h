#pragma once
// Reads a Redis target's keys for `walbust audit`, read-only: SCAN with COUNT 1000 on each
// master (the server, every master of a cluster, the master the sentinels name; over TCP,
// TLS or a unix socket, through the target's KeySink) and the TTL of each page's keys with
// PTTL in one pipeline. No other command is sent, ever: audits run against production
// caches.
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "walbust/io/config.h"
#include "walbust/io/key_sink.h"
#include "walbust/io/redis_client.h"

namespace walbust {

struct ScannedKey {
  std::string key;
  bool has_ttl = false;
};

class RedisKeyScan {
 public:
  RedisKeyScan(const RedisSettings& settings, std::string password);
  ~RedisKeyScan();

  // Connects to the target's masters (discovering a cluster's or a sentinel's). Throws
  // RedisError.
  void connect();
  // "127.0.0.1:6379/0", or "cluster a:1,b:2 (3 masters)": never a password.
  [[nodiscard]] std::string describe() const;

  // Up to `max_keys` keys of the next SCAN page with their TTL state; keys that expired
  // between SCAN and PTTL are left out. Pages are taken from the masters in turn, so a
  // sample spreads over the whole cluster. Returns false once every master is scanned.
  [[nodiscard]] bool next_page(std::size_t max_keys, std::vector<ScannedKey>& out);
  // True once every master's SCAN cursor came back to 0.
  [[nodiscard]] bool exhausted() const;

 private:
  struct Master {
    RedisClient* client = nullptr;  // owned by sink_
    std::string cursor = "0";
    bool done = false;
    // The reply to the SCAN sent with the previous page's PTTLs: one round trip a page.
    std::optional<RedisReply> prefetched;
  };
  static void check_scan(const RedisReply& reply, const Master& master);

  std::unique_ptr<KeySink> sink_;
  std::vector<Master> masters_;
  std::size_t turn_ = 0;
};

}  // namespace walbust
