#pragma once
// Redis endpoint addresses: redis://[user[:password]@]host[:port][/db] (rediss:// for
// TLS; valkey:// and valkeys:// are the same) or unix:///path/to/redis.sock[?db=N].
#include <optional>
#include <string>
#include <string_view>

namespace walbust {

struct RedisEndpoint {
  std::string host;  // empty for a unix socket
  int port = 6379;
  std::string socket_path;  // set for unix:// URLs
  int db = 0;
  std::string user;      // empty: the default user
  std::string password;  // empty: no AUTH (unless a password file provides one)
  bool tls = false;      // rediss:// or valkeys://

  [[nodiscard]] bool is_unix() const { return !socket_path.empty(); }
  // "127.0.0.1:6379/0" or "unix:/run/redis.sock/0": never contains the password.
  [[nodiscard]] std::string describe() const;

  bool operator==(const RedisEndpoint&) const = default;
};

// Returns nullopt and sets `error` on a malformed URL. Percent-escapes in user and
// password are decoded.
[[nodiscard]] std::optional<RedisEndpoint> parse_redis_url(std::string_view url,
                                                           std::string& error);

}  // namespace walbust
