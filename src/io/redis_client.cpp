#include "walbust/io/redis_client.h"

#include <hiredis/hiredis.h>

#include "walbust/io/redis_tls.h"

namespace walbust {
namespace {

RedisReply convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::Integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::Status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::Error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::String;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::Array;
      out.elements.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:
      out.type = RedisReply::Type::Nil;
  }
  return out;
}

// Bytes moved per read; a pipeline's replies usually fit in one.
constexpr std::size_t kReadChunk = 64 * 1024;

}  // namespace

RedisClient::RedisClient(RedisEndpoint endpoint, RedisConnectionOptions options)
    : endpoint_(std::move(endpoint)), options_(std::move(options)) {
  if (options_.password.empty()) options_.password = endpoint_.password;
  if (!options_.opener) options_.opener = open_transport;
}

RedisClient::RedisClient(RedisEndpoint endpoint, std::string password,
                         std::chrono::milliseconds timeout)
    : RedisClient(std::move(endpoint),
                  RedisConnectionOptions{std::move(password), timeout, nullptr, {}}) {}

RedisClient::~RedisClient() { close(); }

std::string RedisClient::describe() const {
  return endpoint_.describe() + (options_.tls != nullptr && !endpoint_.is_unix() ? " (tls)" : "");
}

int RedisClient::fd() const { return transport_ ? transport_->fd() : -1; }

void RedisClient::close() {
  transport_.reset();
  if (reader_ != nullptr) {
    redisReaderFree(reader_);
    reader_ = nullptr;
  }
  out_.clear();
  out_pos_ = 0;
}

void RedisClient::io_failure(const std::string& context) {
  close();
  throw RedisError(RedisErrorClass::Retry, context + " (" + describe() + ")");
}

void RedisClient::wait(RedisTransport::Want want, const char* what) {
  // A paused or hung server must surface as an error, never as a thread blocked forever.
  if (!wait_ready(transport_->fd(), want, options_.timeout)) {
    io_failure(std::string(what) + " timed out after " + std::to_string(options_.timeout.count()) +
               "ms");
  }
}

void RedisClient::handshake() {
  while (true) {
    RedisTransport::Want want = RedisTransport::Want::None;
    try {
      want = transport_->handshake();
    } catch (const RedisError& e) {
      io_failure(e.what());
    }
    if (want == RedisTransport::Want::None) return;
    wait(want, "TLS handshake");
  }
}

void RedisClient::connect() {
  close();
  try {
    transport_ = options_.opener(endpoint_, options_.timeout,
                                 endpoint_.is_unix() ? nullptr : options_.tls.get());
  } catch (const RedisError& e) {
    if (e.fatal()) throw;
    io_failure(std::string("cannot connect to Redis: ") + e.what());
  }
  reader_ = redisReaderCreate();
  if (reader_ == nullptr) io_failure("cannot allocate a RESP reader");
  handshake();
  if (!options_.password.empty()) {
    if (endpoint_.user.empty()) {
      command({"AUTH", options_.password});
    } else {
      command({"AUTH", endpoint_.user, options_.password});
    }
  }
  if (endpoint_.db != 0) {
    const std::string db = std::to_string(endpoint_.db);
    command({"SELECT", db});
  }
  command({"PING"});
}

void RedisClient::append(const RedisCommand& cmd) {
  std::vector<const char*> argv;
  std::vector<std::size_t> argvlen;
  argv.reserve(cmd.size());
  argvlen.reserve(cmd.size());
  for (auto arg : cmd) {
    argv.push_back(arg.data());
    argvlen.push_back(arg.size());
  }
  char* formatted = nullptr;
  const int len = redisFormatCommandArgv(&formatted, static_cast<int>(argv.size()), argv.data(),
                                         argvlen.data());
  if (len < 0 || formatted == nullptr) io_failure("cannot format a Redis command");
  out_.append(formatted, static_cast<std::size_t>(len));
  redisFreeCommand(formatted);
}

bool RedisClient::flush() {
  while (out_pos_ < out_.size()) {
    const auto io = transport_->write(out_.data() + out_pos_, out_.size() - out_pos_);
    if (io.bytes == 0) {
      blocked_on_ = io.want;
      return false;
    }
    out_pos_ += io.bytes;
  }
  out_.clear();
  out_pos_ = 0;
  return true;
}

void RedisClient::read_available() {
  char buf[kReadChunk];
  while (true) {
    const auto io = transport_->read(buf, sizeof buf);
    if (io.bytes == 0) {
      blocked_on_ = io.want;
      return;
    }
    if (redisReaderFeed(reader_, buf, io.bytes) != REDIS_OK)
      io_failure("cannot buffer a Redis reply");
    if (io.bytes < sizeof buf && !transport_->buffered()) {
      blocked_on_ = RedisTransport::Want::Read;
      return;
    }
  }
}

bool RedisClient::pop(RedisReply& reply) {
  void* raw = nullptr;
  if (redisReaderGetReply(reader_, &raw) != REDIS_OK) io_failure("malformed reply from Redis");
  if (raw == nullptr) return false;
  auto* r = static_cast<redisReply*>(raw);
  reply = convert(r);
  freeReplyObject(r);
  return true;
}

std::vector<RedisReply> RedisClient::pipeline(const std::vector<RedisCommand>& commands) {
  send(commands);
  return receive(commands.size());
}

void RedisClient::send(const std::vector<RedisCommand>& commands) {
  if (!transport_) connect();
  for (const auto& cmd : commands) append(cmd);
  try {
    // A write may need a read first (TLS); read_available() keeps what arrives.
    while (!flush()) wait(blocked_on_, "sending to Redis");
  } catch (const RedisError& e) {
    if (!transport_) throw;
    io_failure(std::string("cannot send to Redis: ") + e.what());
  }
}

std::vector<RedisReply> RedisClient::receive(std::size_t count) {
  if (!transport_) io_failure("no Redis connection to read from");
  std::vector<RedisReply> replies;
  replies.reserve(count);
  try {
    // Everything that had arrived was read before the commands went out, so the first
    // replies are still on their way: waiting first saves a read that would only say so.
    blocked_on_ = RedisTransport::Want::Read;
    while (replies.size() < count) {
      RedisReply reply;
      if (pop(reply)) {
        replies.push_back(std::move(reply));
        continue;
      }
      if (!transport_->buffered()) wait(blocked_on_, "waiting for Redis");
      read_available();
    }
  } catch (const RedisError& e) {
    if (!transport_) throw;
    io_failure(std::string("lost the Redis connection: ") + e.what());
  }
  return replies;
}

RedisReply RedisClient::command(const RedisCommand& cmd) {
  auto replies = pipeline({cmd});
  RedisReply& r = replies.front();
  if (r.type == RedisReply::Type::Error) {
    const auto kind = classify_redis_error(r.str);
    // Never echo AUTH arguments; the reply text itself carries no secret.
    const std::string name = cmd.empty() ? "" : std::string(cmd.front());
    throw RedisError(kind, "Redis " + name + " failed (" + describe() + "): " + r.str);
  }
  return std::move(r);
}

}  // namespace walbust
