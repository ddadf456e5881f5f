#include "walbust/core/redis_errors.h"

namespace walbust {
namespace {
bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}
}  // namespace

RedisErrorClass classify_redis_error(std::string_view message) {
  if (starts_with(message, "MOVED ")) return RedisErrorClass::Moved;
  if (starts_with(message, "ASK ")) return RedisErrorClass::Ask;
  if (starts_with(message, "NOPERM") || starts_with(message, "WRONGPASS") ||
      starts_with(message, "NOAUTH") || starts_with(message, "ERR unknown command") ||
      starts_with(message, "ERR AUTH") || starts_with(message, "ERR Client sent AUTH") ||
      starts_with(message, "ERR invalid password") || starts_with(message, "ERR DB index")) {
    return RedisErrorClass::Fatal;
  }
  // Everything else (LOADING, BUSY, MASTERDOWN, TRYAGAIN, READONLY after a failover, OOM,
  // CLUSTERDOWN, and errors we do not know) is retried: stopping would guarantee stale
  // caches, retrying only delays acknowledgement.
  return RedisErrorClass::Retry;
}

}  // namespace walbust
