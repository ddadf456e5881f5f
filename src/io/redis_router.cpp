#include "walbust/io/redis_router.h"

namespace walbust {

void throw_reply_errors(const std::vector<RedisReply>& replies, const char* what,
                        const RedisClient& client) {
  const RedisReply* first_error = nullptr;
  for (const auto& r : replies) {
    if (r.type != RedisReply::Type::Error) continue;
    if (classify_redis_error(r.str) == RedisErrorClass::Fatal) {
      throw RedisError(RedisErrorClass::Fatal,
                       std::string(what) + " failed on " + client.describe() + ": " + r.str);
    }
    if (first_error == nullptr) first_error = &r;
  }
  if (first_error != nullptr) {
    // READONLY, LOADING, MASTERDOWN and the like: the whole batch is resent later.
    throw RedisError(
        classify_redis_error(first_error->str),
        std::string(what) + " failed on " + client.describe() + ": " + first_error->str);
  }
}

OpPipeline plan_pipeline(const std::vector<RedisOp>& ops, std::string_view delete_verb) {
  OpPipeline p;
  bool open_delete = false;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const RedisOp& op = ops[i];
    if (op.kind == RedisOp::Kind::Delete && open_delete &&
        p.commands.back().size() <= RedisRouter::kKeysPerCommand) {
      p.commands.back().push_back(op.key);
      continue;
    }
    p.first_op.push_back(i);
    switch (op.kind) {
      case RedisOp::Kind::Delete:
        p.commands.push_back(RedisCommand{delete_verb, op.key});
        break;
      case RedisOp::Kind::Set:
        p.commands.push_back(RedisCommand{"SET", op.key, op.value});
        break;
      case RedisOp::Kind::Exists:
        p.commands.push_back(RedisCommand{"EXISTS", op.key});
        break;
      case RedisOp::Kind::Command:
        p.commands.emplace_back(op.argv->begin(), op.argv->end());
        break;
    }
    open_delete = op.kind == RedisOp::Kind::Delete;
  }
  return p;
}

void execute_on(RedisClient& client, std::vector<RedisOp>& ops, std::string_view delete_verb,
                RouterCounts& counts) {
  if (ops.empty()) return;
  const OpPipeline p = plan_pipeline(ops, delete_verb);
  const auto replies = client.pipeline(p.commands);
  counts.commands += p.commands.size();
  throw_reply_errors(replies, "pipeline", client);
  for (std::size_t c = 0; c < replies.size(); ++c) {
    if (replies[c].type != RedisReply::Type::Integer) continue;
    RedisOp& op = ops[p.first_op[c]];
    op.reply = replies[c].integer;
    if (op.kind == RedisOp::Kind::Delete) counts.existed += replies[c].integer;
  }
}

SingleRouter::SingleRouter(RedisEndpoint endpoint, RedisConnectionOptions options)
    : client_(std::move(endpoint), std::move(options)) {}

void SingleRouter::execute(std::vector<RedisOp>& ops, std::string_view delete_verb,
                           RouterCounts& counts) {
  if (ops.empty()) return;
  written_ = true;
  execute_on(client_, ops, delete_verb, counts);
}

std::vector<RedisClient*> SingleRouter::take_written() {
  if (!written_) return {};
  written_ = false;
  return {&client_};
}

}  // namespace walbust
