// Opening a Redis transport from a fiber: every wait of it, the host name lookup included,
// suspends the fiber instead of blocking the thread that serves it. And reading from it:
// no read that could only find nothing.
#include "walbust/io/redis_transport.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "walbust/io/fiber.h"
#include "walbust/io/redis_client.h"

namespace walbust {
namespace {

using namespace std::chrono_literals;

// A listening socket on 127.0.0.1; connects complete in the kernel's backlog.
class Listener {
 public:
  Listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
  }
  ~Listener() { ::close(fd_); }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] int accept() const { return ::accept(fd_, nullptr, nullptr); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Runs `body` in a fiber the way the event loop would: poll its fd, or sleep its
// timeout. Returns how many times the fiber suspended.
int run_in_fiber(const std::function<void()>& body) {
  Fiber f(body);
  int suspensions = -1;
  f.resume();
  while (!f.finished()) {
    ++suspensions;
    const auto wake = f.wait_fd() >= 0
                          ? fiber_wait(f.wait_fd(), f.wait_events(), f.wait_timeout())
                          : (std::this_thread::sleep_for(f.wait_timeout()), Fiber::Wake::Timeout);
    f.resume(wake);
  }
  return suspensions + 1;
}

RedisEndpoint endpoint(const std::string& host, int port) {
  RedisEndpoint ep;
  ep.host = host;
  ep.port = port;
  return ep;
}

TEST(RedisTransport, ConnectsByNameFromAFiber) {
  Listener listener;
  std::unique_ptr<RedisTransport> t;
  (void)run_in_fiber(
      [&] { t = open_transport(endpoint("localhost", listener.port()), 2s, nullptr); });
  ASSERT_NE(t, nullptr);
  EXPECT_GE(t->fd(), 0);
}

TEST(RedisTransport, ConnectsToAnAddressWithoutALookup) {
  Listener listener;
  std::unique_ptr<RedisTransport> t;
  (void)run_in_fiber(
      [&] { t = open_transport(endpoint("127.0.0.1", listener.port()), 2s, nullptr); });
  ASSERT_NE(t, nullptr);
  // And the same outside a fiber, where the waits block.
  EXPECT_NE(open_transport(endpoint("127.0.0.1", listener.port()), 2s, nullptr), nullptr);
}

TEST(RedisTransport, ANameThatDoesNotResolveFailsNamingIt) {
  std::string error;
  (void)run_in_fiber([&] {
    try {
      (void)open_transport(endpoint("walbust-test.invalid", 6379), 500ms, nullptr);
    } catch (const RedisError& e) {
      error = e.what();
    }
  });
  EXPECT_NE(error.find("cannot resolve walbust-test.invalid"), std::string::npos) << error;
}

TEST(RedisTransport, ACancelledFiberStopsWaitingForTheLookup) {
  // A lookup the fiber abandons is left to glibc; the fiber itself ends at once.
  std::string error;
  Fiber f([&] {
    try {
      (void)open_transport(endpoint("walbust-test.invalid", 6379), 60s, nullptr);
    } catch (const RedisError& e) {
      error = e.what();
    }
  });
  f.resume();
  f.cancel();
  EXPECT_TRUE(f.finished());
  EXPECT_NE(error.find("walbust-test.invalid"), std::string::npos) << error;
}

// The transport walbust opens, with the reads that found nothing counted.
class CountingTransport final : public RedisTransport {
 public:
  CountingTransport(std::unique_ptr<RedisTransport> inner, int& empty_reads)
      : inner_(std::move(inner)), empty_reads_(empty_reads) {}
  [[nodiscard]] int fd() const override { return inner_->fd(); }
  Io read(char* buf, std::size_t len) override {
    const Io io = inner_->read(buf, len);
    if (io.bytes == 0) ++empty_reads_;
    return io;
  }
  Io write(const char* buf, std::size_t len) override { return inner_->write(buf, len); }

 private:
  std::unique_ptr<RedisTransport> inner_;
  int& empty_reads_;
};

TEST(RedisClient, WaitsForARepliesArrivalInsteadOfReadingBeforeIt) {
  // A server that answers each write of PINGs 20 ms later, one PONG per PING.
  Listener listener;
  std::thread server([&listener] {
    const int fd = listener.accept();
    char buf[4096];
    ssize_t n = 0;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) {
      std::string replies;
      for (std::string_view in(buf, static_cast<std::size_t>(n));
           in.find("PING") != std::string_view::npos; in.remove_prefix(in.find("PING") + 4)) {
        replies += "+PONG\r\n";
      }
      std::this_thread::sleep_for(20ms);
      (void)::send(fd, replies.data(), replies.size(), MSG_NOSIGNAL);
    }
    ::close(fd);
  });
  int empty_reads = 0;
  RedisConnectionOptions options;
  options.opener = [&](const RedisEndpoint& e, std::chrono::milliseconds timeout,
                       const TlsContext* tls) {
    return std::make_unique<CountingTransport>(open_transport(e, timeout, tls), empty_reads);
  };
  {
    RedisClient client(endpoint("127.0.0.1", listener.port()), options);
    client.connect();  // sends a PING
    const auto replies = client.pipeline({{"PING"}, {"PING"}, {"PING"}});
    ASSERT_EQ(replies.size(), 3U);
    EXPECT_EQ(replies[2].str, "PONG");
  }
  server.join();
  EXPECT_EQ(empty_reads, 0) << "a read that could only find nothing";
}

}  // namespace
}  // namespace walbust
