// Small value parsers used by the configuration: durations, Redis URLs, backoff, Redis
// error classes.
#include <gtest/gtest.h>

#include "walbust/core/backoff.h"
#include "walbust/core/duration.h"
#include "walbust/core/redis_errors.h"
#include "walbust/core/redis_url.h"

namespace walbust {
namespace {

using std::chrono::milliseconds;

TEST(Duration, ParsesUnits) {
  EXPECT_EQ(parse_duration("0"), milliseconds(0));
  EXPECT_EQ(parse_duration("0ms"), milliseconds(0));
  EXPECT_EQ(parse_duration("250ms"), milliseconds(250));
  EXPECT_EQ(parse_duration("10s"), milliseconds(10000));
  EXPECT_EQ(parse_duration("5m"), milliseconds(300000));
  EXPECT_EQ(parse_duration("2h"), milliseconds(7200000));
  for (const char* bad :
       {"", "10", "s", "-1s", "1.5s", "10 s", "10sec", "1d", "99999999999999999999h"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
  }
  EXPECT_EQ(format_duration(milliseconds(1500)), "1500ms");
  EXPECT_EQ(format_duration(milliseconds(10000)), "10s");
  EXPECT_EQ(format_duration(milliseconds(0)), "0ms");
}

TEST(Duration, ReadsPostgresSettingsAsShowPrintsThem) {
  const auto pg = [](const char* text) {
    return parse_duration(text, DurationSyntax::PostgresSetting);
  };
  EXPECT_EQ(pg("0"), milliseconds(0));
  EXPECT_EQ(pg("500"), milliseconds(500));  // a bare number is in the setting's unit
  EXPECT_EQ(pg("500ms"), milliseconds(500));
  EXPECT_EQ(pg("5s"), milliseconds(5000));
  EXPECT_EQ(pg("1min"), milliseconds(60000));
  EXPECT_EQ(pg("2h"), milliseconds(7200000));
  EXPECT_EQ(pg("1d"), milliseconds(86400000));
  for (const char* bad : {"", "1m", "min", "-5s", "1.5s", "99999999999999999999d"}) {
    EXPECT_FALSE(pg(bad).has_value()) << bad;
  }
}

TEST(RedisUrl, ParsesTcpUrls) {
  std::string err;
  auto ep = parse_redis_url("redis://127.0.0.1:6380/2", err);
  ASSERT_TRUE(ep) << err;
  EXPECT_EQ(ep->host, "127.0.0.1");
  EXPECT_EQ(ep->port, 6380);
  EXPECT_EQ(ep->db, 2);
  ep = parse_redis_url("redis://walbust:p%40ss@cache.local", err);
  ASSERT_TRUE(ep) << err;
  EXPECT_EQ(ep->user, "walbust");
  EXPECT_EQ(ep->password, "p@ss");
  EXPECT_EQ(ep->port, 6379);
  EXPECT_EQ(ep->db, 0);
  EXPECT_EQ(ep->describe(), "cache.local:6379/0");  // never the password
  ep = parse_redis_url("redis://:secret@[::1]:7000/1", err);
  ASSERT_TRUE(ep) << err;
  EXPECT_EQ(ep->host, "::1");
  EXPECT_EQ(ep->password, "secret");
  EXPECT_EQ(ep->describe(), "[::1]:7000/1");
}

TEST(RedisUrl, ParsesUnixSockets) {
  std::string err;
  auto ep = parse_redis_url("unix:///run/redis/redis.sock?db=3", err);
  ASSERT_TRUE(ep) << err;
  EXPECT_TRUE(ep->is_unix());
  EXPECT_EQ(ep->socket_path, "/run/redis/redis.sock");
  EXPECT_EQ(ep->db, 3);
}

TEST(RedisUrl, RejectsMalformedUrls) {
  for (const char* bad :
       {"http://x", "redis://", "redis://host:0", "redis://host:70000", "redis://host/x",
        "unix://relative.sock", "unix:///s?foo=1", "redis://u:%zz@h", "redis://[::1"}) {
    std::string err;
    EXPECT_FALSE(parse_redis_url(bad, err)) << bad;
    EXPECT_FALSE(err.empty()) << bad;
  }
}

TEST(Backoff, GrowsToTheCapWithJitter) {
  Backoff b(milliseconds(100), milliseconds(1000));
  EXPECT_EQ(b.next(1.0), milliseconds(100));
  EXPECT_EQ(b.next(0.0), milliseconds(100));  // 200 * [0.5, 1]
  EXPECT_EQ(b.next(1.0), milliseconds(400));
  EXPECT_EQ(b.next(1.0), milliseconds(800));
  EXPECT_EQ(b.next(1.0), milliseconds(1000));
  for (int i = 0; i < 100; ++i) EXPECT_LE(b.next(0.99), milliseconds(1000));
  b.reset();
  EXPECT_EQ(b.attempts(), 0);
  EXPECT_EQ(b.next(0.0), milliseconds(50));
}

TEST(RedisErrors, Classifies) {
  EXPECT_EQ(classify_redis_error("NOPERM this user has no permissions to run the 'unlink' command"),
            RedisErrorClass::Fatal);
  EXPECT_EQ(classify_redis_error("WRONGPASS invalid username-password pair"),
            RedisErrorClass::Fatal);
  EXPECT_EQ(classify_redis_error("NOAUTH Authentication required."), RedisErrorClass::Fatal);
  EXPECT_EQ(classify_redis_error("ERR unknown command 'UNLINK'"), RedisErrorClass::Fatal);
  EXPECT_EQ(classify_redis_error("LOADING Redis is loading the dataset in memory"),
            RedisErrorClass::Retry);
  EXPECT_EQ(classify_redis_error("BUSY Redis is busy running a script"), RedisErrorClass::Retry);
  EXPECT_EQ(classify_redis_error("MASTERDOWN Link with MASTER is down"), RedisErrorClass::Retry);
  EXPECT_EQ(classify_redis_error("READONLY You can't write against a read only replica."),
            RedisErrorClass::Retry);
  EXPECT_EQ(classify_redis_error("TRYAGAIN Multiple keys request during rehashing"),
            RedisErrorClass::Retry);
  EXPECT_EQ(classify_redis_error("MOVED 3999 127.0.0.1:6381"), RedisErrorClass::Moved);
  EXPECT_EQ(classify_redis_error("ASK 3999 127.0.0.1:6381"), RedisErrorClass::Ask);
}

}  // namespace
}  // namespace walbust
