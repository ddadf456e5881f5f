#include "walbust/io/key_sink.h"

#include <spdlog/spdlog.h>

#include "walbust/io/batch_writer.h"
#include "walbust/io/cluster_router.h"
#include "walbust/io/config.h"
#include "walbust/io/sentinel_router.h"

namespace walbust {
namespace {

// Stands in for a target whose TLS or password files cannot be used: every attempt
// reports the configuration error, which stops the daemon like a wrong password.
class UnusableRouter final : public RedisRouter {
 public:
  UnusableRouter(std::string where, std::string error)
      : where_(std::move(where)), error_(std::move(error)) {}
  void connect() override { throw RedisError(RedisErrorClass::Fatal, error_); }
  void close() override {}
  [[nodiscard]] bool connected() const override { return false; }
  [[nodiscard]] std::string describe() const override { return where_; }
  void execute(std::vector<RedisOp>&, std::string_view, RouterCounts&) override { connect(); }
  [[nodiscard]] std::vector<RedisClient*> masters() override {
    connect();
    return {};
  }
  [[nodiscard]] std::vector<RedisClient*> take_written() override { return {}; }

 private:
  std::string where_;
  std::string error_;
};

std::vector<ClusterNode> parse_nodes(const std::vector<std::string>& texts) {
  // An unparsable entry is left out; with none left, connect() fails as a configuration error.
  std::vector<ClusterNode> nodes;
  for (const auto& n : texts) {
    if (auto node = parse_cluster_node(n); node && !node->host.empty())
      nodes.push_back(std::move(*node));
  }
  return nodes;
}

std::unique_ptr<RedisRouter> make_router(const RedisSettings& settings,
                                         RedisConnectionOptions options) {
  if (settings.cluster) {
    return std::make_unique<ClusterRouter>(parse_nodes(settings.nodes), settings.endpoint,
                                           std::move(options));
  }
  if (!settings.sentinel.master.empty()) {
    RedisConnectionOptions sentinel_options = options;
    sentinel_options.password = read_password_file(settings.sentinel.password_file);
    RedisEndpoint data = settings.endpoint;
    data.db = settings.db;
    return std::make_unique<SentinelRouter>(
        settings.sentinel.master, parse_nodes(settings.sentinel.nodes), std::move(sentinel_options),
        std::move(data), std::move(options));
  }
  return std::make_unique<SingleRouter>(settings.endpoint, std::move(options));
}

}  // namespace

std::unique_ptr<KeySink> make_key_sink(const RedisSettings& settings, const std::string& password) {
  std::unique_ptr<RedisRouter> router;
  try {
    RedisConnectionOptions options{password, settings.timeout, make_tls_context(settings.tls), {}};
    if (settings.tls.enabled && !settings.tls.verify) {
      spdlog::warn(
          "redis {}: tls.verify is false: the server's certificate is not checked (testing only)",
          settings.cluster ? "cluster" : settings.endpoint.describe());
    }
    router = make_router(settings, std::move(options));
  } catch (const std::exception& e) {
    router = std::make_unique<UnusableRouter>(settings.endpoint.describe(), e.what());
  }
  return std::make_unique<BatchWriter>(std::move(router), settings.delete_command, settings.wait);
}

}  // namespace walbust
