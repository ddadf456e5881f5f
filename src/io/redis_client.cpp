#include "walbust/redis_client.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

namespace walbust {
namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

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

}  // namespace

RedisClient::RedisClient(RedisEndpoint endpoint, std::string password, std::chrono::milliseconds timeout)
    : endpoint_(std::move(endpoint)), password_(std::move(password)), timeout_(timeout) {
  if (password_.empty()) password_ = endpoint_.password;
}

RedisClient::~RedisClient() { close(); }

void RedisClient::close() {
  if (ctx_ != nullptr) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
}

void RedisClient::io_failure(const std::string& context) {
  std::string msg = context + " (" + endpoint_.describe() + ")";
  if (ctx_ != nullptr && ctx_->err != 0) msg += ": " + std::string(ctx_->errstr);
  if (ctx_ != nullptr && ctx_->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    msg += " (timed out)";
  }
  close();
  throw RedisError(RedisErrorClass::Retry, msg);
}

void RedisClient::connect() {
  close();
  const timeval tv = to_timeval(timeout_);
  ctx_ = endpoint_.is_unix() ? redisConnectUnixWithTimeout(endpoint_.socket_path.c_str(), tv)
                             : redisConnectWithTimeout(endpoint_.host.c_str(), endpoint_.port, tv);
  if (ctx_ == nullptr) throw RedisError(RedisErrorClass::Retry, "cannot allocate a Redis connection");
  if (ctx_->err != 0) io_failure("cannot connect to Redis");
  // Reads and writes time out too: a paused or hung server must surface as an error,
  // never as a thread blocked forever.
  if (redisSetTimeout(ctx_, tv) != REDIS_OK) io_failure("cannot set the Redis timeout");
  if (!endpoint_.is_unix()) redisEnableKeepAlive(ctx_);
  if (!password_.empty()) {
    if (endpoint_.user.empty()) {
      command({"AUTH", password_});
    } else {
      command({"AUTH", endpoint_.user, password_});
    }
  }
  if (endpoint_.db != 0) {
    const std::string db = std::to_string(endpoint_.db);
    command({"SELECT", db});
  }
  command({"PING"});
}

std::vector<RedisReply> RedisClient::pipeline(const std::vector<RedisCommand>& commands) {
  send(commands);
  return receive(commands.size());
}

void RedisClient::send(const std::vector<RedisCommand>& commands) {
  if (ctx_ == nullptr) connect();
  std::vector<const char*> argv;
  std::vector<std::size_t> argvlen;
  for (const auto& cmd : commands) {
    argv.clear();
    argvlen.clear();
    for (auto arg : cmd) {
      argv.push_back(arg.data());
      argvlen.push_back(arg.size());
    }
    if (redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), argvlen.data()) != REDIS_OK) {
      io_failure("cannot queue a Redis command");
    }
  }
  int done = 0;
  while (done == 0) {
    if (redisBufferWrite(ctx_, &done) != REDIS_OK) io_failure("cannot send to Redis");
  }
}

std::vector<RedisReply> RedisClient::receive(std::size_t count) {
  if (ctx_ == nullptr) io_failure("no Redis connection to read from");
  std::vector<RedisReply> replies;
  replies.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) io_failure("lost the Redis connection");
    auto* reply = static_cast<redisReply*>(raw);
    replies.push_back(convert(reply));
    freeReplyObject(reply);
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
    throw RedisError(kind, "Redis " + name + " failed (" + endpoint_.describe() + "): " + r.str);
  }
  return std::move(r);
}

}  // namespace walbust
