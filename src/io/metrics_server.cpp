#include "walbust/io/metrics_server.h"

#include <httplib.h>
#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "walbust/core/metrics.h"

namespace walbust {

namespace {

constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Why a bind failed: cpp-httplib only reports success or failure, so repeat the bind on a
// socket of our own to learn the errno for the error message.
std::string bind_failure_reason(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res);
      rc != 0) {
    return gai_strerror(rc);
  }
  std::string reason = "cannot bind";
  for (addrinfo* rp = res; rp != nullptr; rp = rp->ai_next) {
    const int fd = socket(rp->ai_family, rp->ai_socktype | SOCK_CLOEXEC, rp->ai_protocol);
    if (fd < 0) {
      reason = std::strerror(errno);
      continue;
    }
    int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    const int rc = bind(fd, rp->ai_addr, rp->ai_addrlen);
    const int err = errno;
    close(fd);
    if (rc != 0) {
      reason = std::strerror(err);
      break;
    }
  }
  freeaddrinfo(res);
  if (!reason.empty())
    reason[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(reason[0])));
  return reason;
}

// Threads, socket options, timeouts and the plain-text answers for errors.
void configure_server(httplib::Server& server) {
  // Two workers are plenty for a scraper and a probe, and keep the daemon's thread count low.
  server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  // httplib's default sets SO_REUSEPORT, which would let a second daemon silently share the
  // port; SO_REUSEADDR alone still allows a quick restart.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  server.set_read_timeout(5, 0);
  server.set_write_timeout(5, 0);
  server.set_keep_alive_max_count(100);
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404) res.set_content("not found\n", "text/plain; charset=utf-8");
  });
  server.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        res.status = 500;
        res.set_content("internal error\n", "text/plain; charset=utf-8");
      });
}

// The bound port. Throws std::runtime_error naming `listen` and why no address could be bound.
int bind_listen_address(httplib::Server& server, const ListenAddress& address,
                        const std::string& listen) {
  // ":PORT" means every address: "::" is dual-stack on Linux unless IPv6 is disabled, in
  // which case fall back to IPv4 only.
  std::vector<std::string> hosts;
  if (address.host.empty()) {
    hosts = {"::", "0.0.0.0"};
  } else {
    hosts = {address.host};
  }
  int bound = -1;
  for (const auto& host : hosts) {
    if (address.port == 0) {
      bound = server.bind_to_any_port(host, AI_PASSIVE);
    } else if (server.bind_to_port(host, address.port, AI_PASSIVE)) {
      bound = address.port;
    }
    if (bound > 0) break;
  }
  if (bound <= 0) {
    throw std::runtime_error("metrics.listen " + listen + ": " +
                             bind_failure_reason(hosts.front(), address.port));
  }
  return bound;
}

}  // namespace

std::optional<ListenAddress> parse_listen_address(std::string_view listen) {
  ListenAddress out;
  std::string_view port;
  if (listen.starts_with('[')) {
    const auto close = listen.find(']');
    if (close == std::string_view::npos || close + 1 >= listen.size() || listen[close + 1] != ':') {
      return std::nullopt;
    }
    out.host = listen.substr(1, close - 1);
    if (out.host.empty()) return std::nullopt;
    port = listen.substr(close + 2);
  } else {
    const auto colon = listen.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    out.host = listen.substr(0, colon);
    // A bare IPv6 address needs brackets: "::1:9650" is ambiguous.
    if (out.host.find(':') != std::string::npos) return std::nullopt;
    port = listen.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5) return std::nullopt;
  const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), out.port);
  if (ec != std::errc() || ptr != port.data() + port.size() || out.port < 0 || out.port > 65535) {
    return std::nullopt;
  }
  return out;
}

MetricsServer::MetricsServer(std::string listen, const MetricsRegistry& registry,
                             HealthCheck health)
    : listen_(std::move(listen)), registry_(registry), health_(std::move(health)) {
  auto parsed = parse_listen_address(listen_);
  if (!parsed) {
    throw std::invalid_argument("metrics.listen \"" + listen_ +
                                "\": expected HOST:PORT, [IPV6]:PORT or :PORT");
  }
  address_ = std::move(*parsed);
}

MetricsServer::~MetricsServer() { stop(); }

void MetricsServer::start() {
  if (server_) return;
  auto server = std::make_unique<httplib::Server>();
  configure_server(*server);

  server->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry_.render(), kMetricsContentType);
  });
  server->Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    auto [healthy, reason] = health_ ? health_() : std::pair<bool, std::string>{true, ""};
    res.status = healthy ? 200 : 503;
    std::string body = healthy ? (reason.empty() ? "ok" : "ok: " + reason) : reason;
    res.set_content(body + "\n", "text/plain; charset=utf-8");
  });
  port_ = bind_listen_address(*server, address_, listen_);
  server_ = std::move(server);
  auto finished = std::make_shared<std::atomic<bool>>(false);
  thread_ = std::thread([s = server_.get(), finished] {
    (void)pthread_setname_np(pthread_self(), "metrics http");
    s->listen_after_bind();
    finished->store(true);
  });
  // httplib's stop() is a no-op until the accept loop runs, so wait for it: otherwise an
  // early stop() would leave the thread serving and join() hanging.
  while (!server_->is_running() && !finished->load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void MetricsServer::stop() {
  if (!server_) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace walbust
