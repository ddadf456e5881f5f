#pragma once
// The HTTP endpoint for Prometheus scrapes (GET /metrics) and health probes (GET /healthz),
// served by cpp-httplib on its own thread so a slow scraper never stalls replication.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace httplib {
class Server;
}

namespace walbust {

class MetricsRegistry;

struct ListenAddress {
  std::string host;  // "" means every address (IPv6 and IPv4)
  int port = 0;
};

// "127.0.0.1:9650", "[::1]:9650", "localhost:9650" or ":9650"; nullopt when malformed.
// Exposed so configuration loading can reject a bad metrics.listen before anything starts.
[[nodiscard]] std::optional<ListenAddress> parse_listen_address(std::string_view listen);

class MetricsServer {
 public:
  // Returns {healthy, reason}; called on the HTTP thread, so it must be thread-safe.
  using HealthCheck = std::function<std::pair<bool, std::string>()>;

  // Throws std::invalid_argument when `listen` is malformed.
  MetricsServer(std::string listen, const MetricsRegistry& registry, HealthCheck health);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds and starts serving. Throws std::runtime_error naming the address and the reason,
  // e.g. "metrics.listen 127.0.0.1:9650: address already in use".
  void start();
  // Stops serving and joins the thread; idempotent.
  void stop();
  // The bound port (the kernel's choice when the configured port was 0); 0 before start().
  [[nodiscard]] int port() const { return port_; }

 private:
  std::string listen_;
  ListenAddress address_;
  const MetricsRegistry& registry_;
  HealthCheck health_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace walbust
