#include "walbust/core/reload_plan.h"

#include <algorithm>

namespace walbust {
namespace {

const RedisTarget* find_target(const std::vector<RedisTarget>& targets, const std::string& name) {
  const auto it = std::find_if(targets.begin(), targets.end(),
                               [&](const RedisTarget& t) { return t.name == name; });
  return it == targets.end() ? nullptr : &*it;
}

// The config key a target was written under: a lone "default" target is the redis: section.
std::string target_key(const std::vector<RedisTarget>& targets, const RedisTarget& target) {
  if (targets.size() == 1 && target.name == "default") return "redis";
  return "targets." + target.name;
}

// Names the tls, wait and sentinel parts on their own; any other difference names the target.
void compare_target(const std::string& key, RedisSettings running, RedisSettings loaded,
                    std::vector<std::string>& changed) {
  if (running.tls != loaded.tls) changed.push_back(key + ".tls");
  if (running.wait != loaded.wait) changed.push_back(key + ".wait");
  if (running.sentinel != loaded.sentinel) changed.push_back(key + ".sentinel");
  loaded.tls = running.tls;
  loaded.wait = running.wait;
  loaded.sentinel = running.sentinel;
  if (running != loaded) changed.push_back(key);
}

// Targets are matched by name: a reordering alone changes nothing that runs.
void compare_targets(const std::vector<RedisTarget>& running,
                     const std::vector<RedisTarget>& loaded, std::vector<std::string>& changed) {
  for (const auto& t : running) {
    const RedisTarget* same = find_target(loaded, t.name);
    if (same == nullptr) {
      changed.push_back(target_key(running, t));
    } else {
      compare_target(target_key(running, t), t.settings, same->settings, changed);
    }
  }
  for (const auto& t : loaded) {
    if (find_target(running, t.name) == nullptr) changed.push_back(target_key(loaded, t));
  }
}

}  // namespace

std::vector<std::uint64_t> rule_target_masks(const RuleSet& rules,
                                             const std::vector<RedisTarget>& targets) {
  std::vector<std::uint64_t> masks(rules.size(), 0);
  for (std::uint32_t r = 0; r < rules.size(); ++r) {
    const auto& names = rules.rule(r).targets;
    for (std::size_t t = 0; t < targets.size(); ++t) {
      if (names.empty() || std::find(names.begin(), names.end(), targets[t].name) != names.end()) {
        masks[r] |= std::uint64_t{1} << t;
      }
    }
  }
  return masks;
}

std::vector<std::string> rules_sending_nowhere(const RuleSet& rules,
                                               const std::vector<std::uint64_t>& masks) {
  std::vector<std::string> names;
  for (std::uint32_t r = 0; r < rules.size() && r < masks.size(); ++r) {
    if (masks[r] == 0) names.push_back(rules.rule(r).name);
  }
  return names;
}

void take_reloadable(Config& running, const Config& loaded) {
  running.rules = loaded.rules;
  running.on_gap = loaded.on_gap;
  running.log = loaded.log;
}

std::vector<std::string> restart_only_changes(const Config& running, const Config& loaded) {
  // `rest` is the loaded config with everything a reload applies or names set to the running
  // value; what still differs afterwards is a setting nobody named here.
  Config rest = loaded;
  take_reloadable(rest, running);
  rest.path = running.path;
  std::vector<std::string> changed;
  auto check = [&](auto member, const char* key) {
    if (running.*member != rest.*member) changed.emplace_back(key);
    rest.*member = running.*member;
  };
  check(&Config::postgres, "postgres");
  compare_targets(running.targets, rest.targets, changed);
  rest.targets = running.targets;
  rest.redis_configured = running.redis_configured;  // follows from the targets
  check(&Config::batch, "batch");
  check(&Config::state_dir, "state_dir");
  check(&Config::metrics_listen, "metrics.listen");
  check(&Config::replicas, "replicas");
  if (running != rest) changed.emplace_back("other settings");
  return changed;
}

}  // namespace walbust
