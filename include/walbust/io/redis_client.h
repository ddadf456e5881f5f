#pragma once
// One Redis connection: plain TCP, TLS or a unix socket (RedisTransport), with hiredis as
// the RESP codec only (commands formatted from binary-safe argv, replies parsed from the
// bytes we read). Pipelining: commands are appended to an output buffer, written in one
// go, and exactly as many replies are read. The buffer halves (append / flush /
// read_available / pop) never block; the blocking calls wait on fd() with the timeout.
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "walbust/core/redis_errors.h"
#include "walbust/core/redis_url.h"
#include "walbust/io/redis_transport.h"

struct redisReader;

namespace walbust {

class TlsContext;

class RedisError : public std::runtime_error {
 public:
  RedisError(RedisErrorClass kind, const std::string& message)
      : std::runtime_error(message), kind_(kind) {}
  [[nodiscard]] RedisErrorClass kind() const { return kind_; }
  [[nodiscard]] bool fatal() const { return kind_ == RedisErrorClass::Fatal; }

 private:
  RedisErrorClass kind_;
};

struct RedisReply {
  enum class Type { Integer, Status, Error, Nil, String, Array };
  Type type = Type::Nil;
  long long integer = 0;
  std::string str;  // Status, Error, String
  std::vector<RedisReply> elements;
};

using RedisCommand = std::vector<std::string_view>;

// How every connection of a target is opened.
struct RedisConnectionOptions {
  std::string password;  // AUTH password; empty: the endpoint's (from the url), if any
  std::chrono::milliseconds timeout{2000};
  std::shared_ptr<const TlsContext> tls;  // null: no TLS
  TransportOpener opener;                 // null: open_transport (tests: a scripted server)
};

class RedisClient {
 public:
  RedisClient(RedisEndpoint endpoint, RedisConnectionOptions options);
  RedisClient(RedisEndpoint endpoint, std::string password, std::chrono::milliseconds timeout);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Connects (TLS handshake included), authenticates, selects the database and pings.
  // Throws RedisError naming the endpoint.
  void connect();
  void close();
  [[nodiscard]] bool connected() const { return transport_ != nullptr; }
  [[nodiscard]] const RedisEndpoint& endpoint() const { return endpoint_; }
  // "127.0.0.1:6380/0", with " (tls)" for TLS connections: never a password.
  [[nodiscard]] std::string describe() const;
  [[nodiscard]] int fd() const;

  // Non-blocking halves, for an event loop. append() formats into the output buffer;
  // flush() writes what the socket takes and is true once the buffer is empty;
  // read_available() feeds what has arrived to the codec (reading again only while a read
  // fills the buffer: a short one emptied the socket); pop() takes a parsed reply.
  void append(const RedisCommand& command);
  [[nodiscard]] bool flush();
  void read_available();
  [[nodiscard]] bool pop(RedisReply& reply);

  // Sends every command in one write and reads every reply. Error replies are returned
  // as replies (the caller classifies them); I/O failures and timeouts close the
  // connection and throw RedisError (Retry).
  [[nodiscard]] std::vector<RedisReply> pipeline(const std::vector<RedisCommand>& commands);
  // The two halves of pipeline(), so that pipelines to several servers overlap: send to
  // each server, then read each one's replies. Same failure rules as pipeline().
  void send(const std::vector<RedisCommand>& commands);
  [[nodiscard]] std::vector<RedisReply> receive(std::size_t count);
  // One command; an error reply is thrown as RedisError with its class.
  RedisReply command(const RedisCommand& command);

 private:
  [[noreturn]] void io_failure(const std::string& context);
  void wait(RedisTransport::Want want, const char* what);
  void handshake();

  RedisEndpoint endpoint_;
  RedisConnectionOptions options_;
  std::unique_ptr<RedisTransport> transport_;
  redisReader* reader_ = nullptr;
  std::string out_;
  std::size_t out_pos_ = 0;
  RedisTransport::Want blocked_on_ = RedisTransport::Want::Read;  // what the last short I/O awaits
};

}  // namespace walbust
