#include "walbust/io/metrics_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <stdexcept>

#include "walbust/core/metrics.h"

namespace walbust {
namespace {

TEST(ListenAddress, Parses) {
  auto a = parse_listen_address("127.0.0.1:9650");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 9650);
  a = parse_listen_address("[::1]:0");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, 0);
  a = parse_listen_address(":9650");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "");
  a = parse_listen_address("localhost:80");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "localhost");
  for (const char* bad : {"", "9650", "host:", "host:65536", "host:-1", "host:9x", "::1:9650",
                          "[::1]", "[::1]9650", "[]:1", "h:123456"}) {
    EXPECT_FALSE(parse_listen_address(bad)) << bad;
  }
}

TEST(MetricsServer, RejectsMalformedListen) {
  MetricsRegistry r;
  EXPECT_THROW(MetricsServer("nonsense", r, nullptr), std::invalid_argument);
}

TEST(MetricsServer, ServesMetricsHealthAnd404) {
  MetricsRegistry registry;
  registry.counter("walbust_transactions_total", "Transactions.").inc(7);
  std::atomic<bool> healthy{true};
  MetricsServer server("127.0.0.1:0", registry, [&] {
    return healthy ? std::pair<bool, std::string>{true, "streaming"}
                   : std::pair<bool, std::string>{false, "redis unreachable"};
  });
  server.start();
  ASSERT_GT(server.port(), 0);

  httplib::Client client("127.0.0.1", server.port());
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(res->body, registry.render());
  EXPECT_NE(res->body.find("walbust_transactions_total 7\n"), std::string::npos);

  res = client.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok: streaming\n");

  healthy = false;
  res = client.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->body, "redis unreachable\n");

  res = client.Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  res = client.Get("/metrics/extra");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  res = client.Post("/metrics", "x", "text/plain");
  ASSERT_TRUE(res);
  EXPECT_NE(res->status, 200);

  server.stop();
  server.stop();  // idempotent
  httplib::Client after("127.0.0.1", server.port());
  EXPECT_FALSE(after.Get("/metrics"));
}

TEST(MetricsServer, ServesIPv6Loopback) {
  MetricsRegistry registry;
  MetricsServer server("[::1]:0", registry, nullptr);
  try {
    server.start();
  } catch (const std::runtime_error& e) {
    GTEST_SKIP() << "no IPv6 loopback here: " << e.what();
  }
  httplib::Client client("::1", server.port());
  auto res = client.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok\n");
}

TEST(MetricsServer, ReportsAddressInUse) {
  MetricsRegistry registry;
  MetricsServer first("127.0.0.1:0", registry, nullptr);
  first.start();
  const std::string listen = "127.0.0.1:" + std::to_string(first.port());
  MetricsServer second(listen, registry, nullptr);
  try {
    second.start();
    FAIL() << "second bind succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "metrics.listen " + listen + ": address already in use");
  }
}

TEST(MetricsServer, ReportsUnresolvableHost) {
  MetricsRegistry registry;
  MetricsServer server("no-such-host.invalid:0", registry, nullptr);
  try {
    server.start();
    FAIL() << "bind succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(std::string(e.what()).starts_with("metrics.listen no-such-host.invalid:0: "))
        << e.what();
  }
}

TEST(MetricsServer, StartStopQuickly) {
  MetricsRegistry registry;
  for (int i = 0; i < 20; ++i) {
    MetricsServer server("127.0.0.1:0", registry, nullptr);
    server.start();
    server.stop();
  }
}

}  // namespace
}  // namespace walbust

namespace walbust {
namespace {

TEST(MetricsServer, EmptyHostListensOnEveryAddress) {
  MetricsRegistry registry;
  MetricsServer server(":0", registry, nullptr);
  server.start();
  httplib::Client client("127.0.0.1", server.port());
  auto res = client.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

}  // namespace
}  // namespace walbust
