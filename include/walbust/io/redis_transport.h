#pragma once
// How a Redis connection moves bytes: a plain socket (TCP or unix) or a TLS session on a
// TCP socket. Non-blocking: an operation that cannot progress says which readiness it
// waits for, and the connection waits for it with wait_ready().
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>

#include "walbust/core/redis_url.h"

namespace walbust {

class TlsContext;

class RedisTransport {
 public:
  enum class Want { None, Read, Write };
  struct Io {
    std::size_t bytes = 0;   // moved; 0 with want == None never happens (errors throw)
    Want want = Want::None;  // when no byte could move: the readiness to wait for
  };

  virtual ~RedisTransport() = default;
  [[nodiscard]] virtual int fd() const = 0;
  // Advances the TLS handshake; Want::None once done (at once for plain sockets).
  // Throws RedisError(Retry) with the reason when it fails.
  virtual Want handshake() { return Want::None; }
  // Throw RedisError(Retry) on a closed or failed connection.
  virtual Io read(char* buf, std::size_t len) = 0;
  virtual Io write(const char* buf, std::size_t len) = 0;
  // True when a read may return bytes the fd does not show (TLS: a decrypted record kept
  // in the session), so the connection reads before it waits.
  [[nodiscard]] virtual bool buffered() const { return false; }
};

// Opens a non-blocking socket to the endpoint within `timeout`: TCP (no Nagle, keepalive)
// or a unix socket, wrapped in TLS when `tls` is set (verified against endpoint.host).
// The TLS handshake is left to RedisTransport::handshake(). Throws RedisError(Retry).
[[nodiscard]] std::unique_ptr<RedisTransport> open_transport(const RedisEndpoint& endpoint,
                                                             std::chrono::milliseconds timeout,
                                                             const TlsContext* tls);

// What connections use to open their transport; tests substitute a scripted server.
using TransportOpener = std::function<std::unique_ptr<RedisTransport>(
    const RedisEndpoint&, std::chrono::milliseconds, const TlsContext*)>;

// Waits until `fd` is ready for `want` or `timeout` passes; false on timeout. In a fiber
// the wait suspends it (fiber_wait), so the event loop serves everything else meanwhile.
[[nodiscard]] bool wait_ready(int fd, RedisTransport::Want want, std::chrono::milliseconds timeout);

}  // namespace walbust
