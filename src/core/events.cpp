#include "walbust/core/events.h"

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <unordered_set>
#include <utility>

namespace walbust {
namespace {

using json = nlohmann::ordered_json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

std::string event_keys_json(const std::vector<std::string>& keys) { return dump(json(keys)); }

std::string event_json(const PublishEvent& e) {
  json j = json::object();
  j["lsn"] = format_lsn(e.lsn);
  j["xid"] = e.xid;
  if (e.part != 0) {
    j["part"] = e.part;
    j["last"] = e.last;
  }
  j["keys"] = e.keys;
  if (!e.patterns.empty()) j["patterns"] = e.patterns;
  return dump(j);
}

std::vector<std::string> event_command(const PublishEvent& e) {
  const PublishDestination& d = e.destination;
  if (d.kind == PublishKind::Channel) return {"PUBLISH", d.name, event_json(e)};
  std::vector<std::string> argv{"XADD",
                                d.name,
                                "MAXLEN",
                                "~",
                                std::to_string(d.maxlen),
                                "*",
                                "lsn",
                                format_lsn(e.lsn),
                                "xid",
                                std::to_string(e.xid),
                                "keys",
                                event_keys_json(e.keys)};
  if (e.part != 0) {
    argv.insert(argv.end(), {"part", std::to_string(e.part), "last", e.last ? "1" : "0"});
  }
  if (!e.patterns.empty()) argv.insert(argv.end(), {"patterns", event_keys_json(e.patterns)});
  return argv;
}

// The part being gathered for one destination and target.
struct EventBuilder::Group {
  PublishDestination destination;
  std::size_t target = 0;
  std::uint32_t rule = 0;  // the first rule that published here (dry-run shows it)
  std::uint32_t parts_sent = 0;
  std::size_t bytes = 0;
  std::vector<std::string> keys;
  std::vector<std::string> patterns;
  // Keys and patterns ('\0' + pattern) sent or gathered in this transaction, forgotten
  // when it reaches the limit: hot keys then repeat once per that many keys, not per part.
  std::unordered_set<std::string> seen;

  [[nodiscard]] std::size_t size() const { return keys.size() + patterns.size(); }
};

EventBuilder::EventBuilder(std::size_t max_keys, std::size_t max_bytes)
    : max_keys_(std::max<std::size_t>(1, max_keys)),
      max_bytes_(max_bytes),
      max_seen_(kSeenParts * max_keys_) {}

EventBuilder::~EventBuilder() = default;

void EventBuilder::begin(Lsn commit_lsn, std::uint32_t xid) {
  groups_.clear();
  lsn_ = commit_lsn;
  xid_ = xid;
}

void EventBuilder::reset() { groups_.clear(); }

EventBuilder::Group& EventBuilder::group(const PublishDestination& dest, std::size_t target,
                                         std::uint32_t rule) {
  for (auto& g : groups_) {
    if (g.target == target && g.destination.kind == dest.kind && g.destination.name == dest.name) {
      return g;
    }
  }
  Group& g = groups_.emplace_back();
  g.destination = dest;
  g.target = target;
  g.rule = rule;
  return g;
}

void EventBuilder::add(const RuleSet& rules, const std::vector<PublishedKey>& keys,
                       const std::vector<std::uint64_t>& rule_targets,
                       std::vector<TargetedAction>& out) {
  for (const PublishedKey& k : keys) {
    const PublishDestination& dest = rules.rule(k.rule).publish.at(k.destination);
    std::uint64_t mask = k.rule < rule_targets.size() ? rule_targets[k.rule] : 0;
    for (std::size_t t = 0; mask != 0; ++t, mask >>= 1) {
      if ((mask & 1U) == 0) continue;
      Group& g = group(dest, t, k.rule);
      std::string id = k.pattern ? '\0' + k.key : k.key;
      if (g.seen.count(id) != 0) continue;
      // Full: this key opens the next part, so a part is never sent empty at commit.
      if (g.size() >= max_keys_ || g.bytes >= max_bytes_) emit(g, false, out);
      g.bytes += k.key.size();
      (k.pattern ? g.patterns : g.keys).push_back(k.key);
      g.seen.insert(std::move(id));
    }
  }
}

void EventBuilder::commit(std::vector<TargetedAction>& out) {
  for (auto& g : groups_) {
    if (g.size() != 0) emit(g, true, out);
  }
  groups_.clear();
}

void EventBuilder::emit(Group& g, bool last, std::vector<TargetedAction>& out) {
  auto event = std::make_shared<PublishEvent>();
  event->destination = g.destination;
  event->lsn = lsn_;
  event->xid = xid_;
  // A transaction that fits one message carries no part number.
  event->part = last && g.parts_sent == 0 ? 0 : ++g.parts_sent;
  event->last = last;
  event->keys = std::move(g.keys);
  event->patterns = std::move(g.patterns);
  g.keys.clear();
  g.patterns.clear();
  if (g.seen.size() >= max_seen_) g.seen.clear();
  g.bytes = 0;
  TargetedAction a;
  a.target = g.target;
  a.action.kind = ActionKind::Publish;
  a.action.rule = g.rule;
  a.action.key = g.destination.name;
  a.action.event = std::move(event);
  out.push_back(std::move(a));
}

}  // namespace walbust
