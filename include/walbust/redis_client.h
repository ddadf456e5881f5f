#pragma once
// One hiredis connection with pipelining: commands are appended as binary-safe argv
// (no formatting of values into a command string) and exactly as many replies are read.
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "walbust/redis_errors.h"
#include "walbust/redis_url.h"

struct redisContext;

namespace walbust {

class RedisError : public std::runtime_error {
 public:
  RedisError(RedisErrorClass kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
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

class RedisClient {
 public:
  RedisClient(RedisEndpoint endpoint, std::string password, std::chrono::milliseconds timeout);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Connects, authenticates, selects the database and pings. Throws RedisError.
  void connect();
  void close();
  [[nodiscard]] bool connected() const { return ctx_ != nullptr; }
  [[nodiscard]] const RedisEndpoint& endpoint() const { return endpoint_; }

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

  RedisEndpoint endpoint_;
  std::string password_;
  std::chrono::milliseconds timeout_;
  redisContext* ctx_ = nullptr;
};

}  // namespace walbust
