#include "walbust/core/redis_url.h"

#include <charconv>

namespace walbust {
namespace {

bool parse_int(std::string_view s, int min, int max, int& out) {
  if (s.empty()) return false;
  int v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || v < min || v > max) return false;
  out = v;
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = hex_value(s[i + 1]);
    const int lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// unix:///path/to/redis.sock[?db=N], `rest` being what follows "unix://".
std::optional<RedisEndpoint> parse_unix_url(std::string_view rest, std::string& error) {
  RedisEndpoint ep;
  const auto q = rest.find('?');
  std::string_view path = rest.substr(0, q);
  if (path.empty() || path.front() != '/') {
    error = "unix socket URL needs an absolute path (unix:///path/to/redis.sock)";
    return std::nullopt;
  }
  ep.socket_path = std::string(path);
  if (q != std::string_view::npos) {
    std::string_view query = rest.substr(q + 1);
    if (query.substr(0, 3) != "db=" || !parse_int(query.substr(3), 0, 1 << 20, ep.db)) {
      error = "unix socket URL accepts only ?db=N as query";
      return std::nullopt;
    }
  }
  return ep;
}

// user[:password], percent-decoded.
bool parse_credentials(std::string_view userinfo, RedisEndpoint& ep, std::string& error) {
  const auto colon = userinfo.find(':');
  auto user = percent_decode(userinfo.substr(0, colon));
  std::optional<std::string> password = std::string{};
  if (colon != std::string_view::npos) password = percent_decode(userinfo.substr(colon + 1));
  if (!user || !password) {
    error = "malformed percent-escape in Redis URL credentials";
    return false;
  }
  ep.user = *user;
  ep.password = *password;
  return true;
}

// host[:port] or [v6-address][:port].
bool parse_host_port(std::string_view authority, RedisEndpoint& ep, std::string& error) {
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      error = "unterminated IPv6 address in Redis URL";
      return false;
    }
    ep.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        error = "unexpected text after IPv6 address in Redis URL";
        return false;
      }
      port = after.substr(1);
    }
  } else {
    const auto colon = authority.rfind(':');
    ep.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (ep.host.empty()) {
    error = "Redis URL has no host";
    return false;
  }
  if (!port.empty() && !parse_int(port, 1, 65535, ep.port)) {
    error = "Redis port must be a number from 1 to 65535";
    return false;
  }
  return true;
}

}  // namespace

std::string RedisEndpoint::describe() const {
  if (is_unix()) return "unix:" + socket_path + "/" + std::to_string(db);
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "/" + std::to_string(db);
}

std::optional<RedisEndpoint> parse_redis_url(std::string_view url, std::string& error) {
  constexpr std::string_view kUnix = "unix://";
  if (url.substr(0, kUnix.size()) == kUnix) return parse_unix_url(url.substr(kUnix.size()), error);
  RedisEndpoint ep;
  std::string_view rest;
  for (const auto& [scheme, tls] : {std::pair{std::string_view("redis://"), false},
                                    {"rediss://", true},
                                    {"valkey://", false},
                                    {"valkeys://", true}}) {
    if (url.substr(0, scheme.size()) == scheme) {
      rest = url.substr(scheme.size());
      ep.tls = tls;
      break;
    }
  }
  if (rest.data() == nullptr) {
    error = "Redis URL must start with redis://, rediss://, valkey://, valkeys:// or unix://";
    return std::nullopt;
  }
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    std::string_view db = rest.substr(slash + 1);
    if (!db.empty() && !parse_int(db, 0, 1 << 20, ep.db)) {
      error = "Redis database number must be a non-negative integer";
      return std::nullopt;
    }
  }
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    if (!parse_credentials(authority.substr(0, at), ep, error)) return std::nullopt;
    authority = authority.substr(at + 1);
  }
  if (!parse_host_port(authority, ep, error)) return std::nullopt;
  return ep;
}

}  // namespace walbust
