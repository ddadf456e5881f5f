#include "walbust/io/sentinel_router.h"

#include <spdlog/spdlog.h>

namespace walbust {

SentinelRouter::SentinelRouter(std::string master_name, std::vector<ClusterNode> sentinels,
                               RedisConnectionOptions sentinel_options, RedisEndpoint data,
                               RedisConnectionOptions data_options)
    : master_name_(std::move(master_name)),
      sentinels_(std::move(sentinels)),
      sentinel_options_(std::move(sentinel_options)),
      data_(std::move(data)),
      data_options_(std::move(data_options)) {
  for (const auto& s : sentinels_) {
    RedisEndpoint ep;
    ep.host = s.host;
    ep.port = s.port;
    sentinel_clients_.push_back(std::make_unique<RedisClient>(std::move(ep), sentinel_options_));
  }
}

SentinelRouter::~SentinelRouter() = default;

std::string SentinelRouter::describe() const {
  return "sentinel " + master_name_ + (data_options_.tls != nullptr ? " (tls)" : "");
}

std::string SentinelRouter::current_master() const {
  return master_node_ ? master_node_->name() : "";
}

void SentinelRouter::close() {
  if (master_) master_->close();
  for (auto& s : sentinel_clients_) s->close();
  written_ = false;
}

std::optional<ClusterNode> SentinelRouter::named_master(const RedisReply& reply) {
  if (reply.type == RedisReply::Type::Nil) return std::nullopt;
  if (reply.type != RedisReply::Type::Array || reply.elements.size() != 2 ||
      reply.elements[0].type != RedisReply::Type::String ||
      reply.elements[1].type != RedisReply::Type::String) {
    throw RedisError(RedisErrorClass::Retry, "unexpected SENTINEL get-master-addr-by-name reply");
  }
  ClusterNode node;
  node.host = reply.elements[0].str;
  try {
    node.port = std::stoi(reply.elements[1].str);
  } catch (const std::exception&) {
    throw RedisError(RedisErrorClass::Retry,
                     "sentinel named a master with port '" + reply.elements[1].str + "'");
  }
  return node;
}

std::optional<ClusterNode> SentinelRouter::ask_sentinels(std::string& why) {
  for (std::size_t n = 0; n < sentinel_clients_.size(); ++n) {
    const std::size_t i = (preferred_ + n) % sentinel_clients_.size();
    RedisClient& s = *sentinel_clients_[i];
    try {
      auto node = named_master(s.command({"SENTINEL", "get-master-addr-by-name", master_name_}));
      if (node) {
        preferred_ = i;
        return node;
      }
      why = "sentinel " + sentinels_[i].name() + " names no master for '" + master_name_ + "'";
    } catch (const RedisError& e) {
      if (e.fatal())
        throw RedisError(RedisErrorClass::Fatal,
                         "sentinel " + sentinels_[i].name() + ": " + e.what());
      why = "sentinel " + sentinels_[i].name() + ": " + e.what();
      s.close();
    }
  }
  return std::nullopt;
}

void SentinelRouter::connect_master(const ClusterNode& node) {
  RedisEndpoint ep = data_;
  ep.host = node.host;  // also the name its TLS certificate is verified against
  ep.port = node.port;
  if (!master_ || !master_node_ || !(*master_node_ == node)) {
    master_ = std::make_unique<RedisClient>(std::move(ep), data_options_);
  }
  master_node_ = node;
  master_->connect();
  const RedisReply role = master_->command({"ROLE"});
  if (role.type != RedisReply::Type::Array || role.elements.empty() ||
      role.elements[0].str != "master") {
    const std::string is = role.elements.empty() ? "?" : role.elements[0].str;
    master_->close();
    throw RedisError(RedisErrorClass::Retry, "sentinels name " + node.name() + " as master of '" +
                                                 master_name_ + "', but it reports role " + is +
                                                 " (failover in progress)");
  }
}

void SentinelRouter::connect() {
  if (sentinel_clients_.empty())
    throw RedisError(RedisErrorClass::Fatal, "sentinel: no nodes configured");
  std::string why = "no sentinel answered";
  const auto node = ask_sentinels(why);
  if (!node)
    throw RedisError(RedisErrorClass::Retry,
                     "sentinel: no master for '" + master_name_ + "': " + why);
  const std::string before = current_master();
  connect_master(*node);
  if (before != node->name()) {
    spdlog::info("redis {}: master is {} (named by sentinel {})", describe(), node->name(),
                 sentinels_[preferred_].name());
  }
}

void SentinelRouter::execute(std::vector<RedisOp>& ops, std::string_view delete_verb,
                             RouterCounts& counts) {
  if (ops.empty()) return;
  if (!connected()) connect();
  written_ = true;
  execute_on(*master_, ops, delete_verb, counts);
}

std::vector<RedisClient*> SentinelRouter::masters() {
  if (!connected()) connect();
  return {master_.get()};
}

std::vector<RedisClient*> SentinelRouter::take_written() {
  if (!written_ || !master_) return {};
  written_ = false;
  return {master_.get()};
}

void SentinelRouter::check_master() {
  // A master that was demoted (or cut off while the sentinels promoted another) may still
  // confirm writes that the new master never sees: acknowledge only what the named one took.
  std::string why = "no sentinel answered";
  const auto node = ask_sentinels(why);
  if (!node)
    throw RedisError(RedisErrorClass::Retry, "sentinel: cannot confirm the master: " + why);
  if (master_node_ && *node == *master_node_) return;
  const std::string was = current_master();
  if (master_) master_->close();
  throw RedisError(RedisErrorClass::Retry, "sentinels now name " + node->name() +
                                               " as master of '" + master_name_ + "' instead of " +
                                               was + "; resending the batch there");
}

}  // namespace walbust
