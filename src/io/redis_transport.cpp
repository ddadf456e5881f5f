#include "walbust/io/redis_transport.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "walbust/io/fiber.h"
#include "walbust/io/host_resolver.h"
#include "walbust/io/redis_client.h"
#include "walbust/io/redis_tls.h"

namespace walbust {
namespace {

[[noreturn]] void io_error(const std::string& what, int err) {
  throw RedisError(RedisErrorClass::Retry, what + ": " + std::strerror(err));
}

class SocketTransport : public RedisTransport {
 public:
  explicit SocketTransport(int fd) : fd_(fd) {}
  ~SocketTransport() override { ::close(fd_); }
  [[nodiscard]] int fd() const override { return fd_; }

  Io read(char* buf, std::size_t len) override {
    while (true) {
      const ssize_t n = ::recv(fd_, buf, len, 0);
      if (n > 0) return Io{static_cast<std::size_t>(n), Want::None};
      if (n == 0) throw RedisError(RedisErrorClass::Retry, "connection closed by the server");
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Io{0, Want::Read};
      io_error("read failed", errno);
    }
  }

  Io write(const char* buf, std::size_t len) override {
    while (true) {
      const ssize_t n = ::send(fd_, buf, len, MSG_NOSIGNAL);
      if (n >= 0) return Io{static_cast<std::size_t>(n), n == 0 ? Want::Write : Want::None};
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Io{0, Want::Write};
      io_error("write failed", errno);
    }
  }

 protected:
  int fd_;
};

class TlsTransport final : public SocketTransport {
 public:
  TlsTransport(int fd, const TlsContext& tls, const std::string& name)
      : SocketTransport(fd), ssl_(tls.new_session(fd, name)) {}
  ~TlsTransport() override { SSL_free(ssl_); }

  Want handshake() override {
    if (done_) return Want::None;
    ERR_clear_error();
    const int rc = SSL_connect(ssl_);
    if (rc == 1) {
      done_ = true;
      return Want::None;
    }
    const int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ) return Want::Read;
    if (err == SSL_ERROR_WANT_WRITE) return Want::Write;
    throw RedisError(RedisErrorClass::Retry,
                     "TLS handshake failed: " + tls_failure_reason(ssl_, err));
  }

  Io read(char* buf, std::size_t len) override {
    ERR_clear_error();
    const int n = SSL_read(ssl_, buf, static_cast<int>(len));
    if (n > 0) return Io{static_cast<std::size_t>(n), Want::None};
    return blocked(n, "TLS read failed");
  }

  [[nodiscard]] bool buffered() const override { return SSL_has_pending(ssl_) == 1; }

  Io write(const char* buf, std::size_t len) override {
    ERR_clear_error();
    const int n = SSL_write(ssl_, buf, static_cast<int>(len));
    if (n > 0) return Io{static_cast<std::size_t>(n), Want::None};
    return blocked(n, "TLS write failed");
  }

 private:
  // TLS may need the other direction than the operation (renegotiation, key updates).
  Io blocked(int rc, const char* what) {
    const int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ) return Io{0, Want::Read};
    if (err == SSL_ERROR_WANT_WRITE) return Io{0, Want::Write};
    if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno != 0 && errno != ECONNRESET &&
        errno != EPIPE) {
      io_error(what, errno);
    }
    throw RedisError(RedisErrorClass::Retry,
                     std::string(what) + ": " + tls_failure_reason(ssl_, err));
  }

  ssl_st* ssl_;
  bool done_ = false;
};

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) io_error("fcntl failed", errno);
}

// Connects a non-blocking socket within the timeout; returns the error (0 on success).
int connect_within(int fd, const sockaddr* addr, socklen_t len, std::chrono::milliseconds timeout) {
  if (::connect(fd, addr, len) == 0) return 0;
  if (errno != EINPROGRESS) return errno;
  if (!wait_ready(fd, RedisTransport::Want::Write, timeout)) return ETIMEDOUT;
  int err = 0;
  socklen_t err_len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0) return errno;
  return err;
}

int open_unix(const RedisEndpoint& ep, std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (ep.socket_path.size() >= sizeof addr.sun_path) {
    throw RedisError(RedisErrorClass::Fatal, "unix socket path too long: " + ep.socket_path);
  }
  std::memcpy(addr.sun_path, ep.socket_path.c_str(), ep.socket_path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) io_error("socket failed", errno);
  set_nonblocking(fd);
  if (const int err =
          connect_within(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr, timeout)) {
    ::close(fd);
    io_error("cannot connect to " + ep.socket_path, err);
  }
  return fd;
}

// The addresses of `host`. An address is parsed on the spot; a name is looked up in
// glibc's asynchronous resolver while this waits with pause_for(), so a slow DNS server
// suspends a fiber instead of the event loop that serves it.
struct Addresses {
  addrinfo* numeric = nullptr;
  std::unique_ptr<NameLookup> lookup;
  ~Addresses() {
    if (numeric != nullptr) ::freeaddrinfo(numeric);
  }
  [[nodiscard]] const addrinfo* first() const { return lookup ? lookup->result() : numeric; }
};

void resolve(const std::string& host, const std::string& port, std::chrono::milliseconds timeout,
             Addresses& out) {
  int rc = 0;
  if (NameLookup::needed(host)) {
    out.lookup = std::make_unique<NameLookup>(host, port);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out.lookup->running()) {
      if (std::chrono::steady_clock::now() >= deadline ||
          !pause_for(std::chrono::milliseconds(2))) {
        throw RedisError(RedisErrorClass::Retry, "cannot resolve " + host + ": no answer within " +
                                                     std::to_string(timeout.count()) + "ms");
      }
    }
    rc = out.lookup->error();
  } else {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST;
    rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &out.numeric);
  }
  if (rc != 0) {
    throw RedisError(RedisErrorClass::Retry, "cannot resolve " + host + ": " + gai_strerror(rc));
  }
}

int open_tcp(const RedisEndpoint& ep, std::chrono::milliseconds timeout) {
  const std::string port = std::to_string(ep.port);
  Addresses addresses;
  resolve(ep.host, port, timeout, addresses);
  int last_error = ECONNREFUSED;
  for (const addrinfo* ai = addresses.first(); ai != nullptr; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = errno;
      continue;
    }
    set_nonblocking(fd);
    last_error = connect_within(fd, ai->ai_addr, ai->ai_addrlen, timeout);
    if (last_error == 0) {
      const int one = 1;
      // Pipelines are written whole; Nagle would only delay the last segment.
      (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      (void)::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
      return fd;
    }
    ::close(fd);
  }
  io_error("cannot connect to " + ep.host + ":" + port, last_error);
}

}  // namespace

bool wait_ready(int fd, RedisTransport::Want want, std::chrono::milliseconds timeout) {
  const short events = want == RedisTransport::Want::Write ? POLLOUT : POLLIN;
  return fiber_wait(fd, events, timeout) == Fiber::Wake::Ready;
}

std::unique_ptr<RedisTransport> open_transport(const RedisEndpoint& endpoint,
                                               std::chrono::milliseconds timeout,
                                               const TlsContext* tls) {
  if (endpoint.is_unix()) {
    const int fd = open_unix(endpoint, timeout);
    return std::make_unique<SocketTransport>(fd);
  }
  const int fd = open_tcp(endpoint, timeout);
  if (tls == nullptr) return std::make_unique<SocketTransport>(fd);
  // A session that cannot be set up closes the socket with the base class.
  return std::make_unique<TlsTransport>(fd, *tls, endpoint.host);
}

}  // namespace walbust
