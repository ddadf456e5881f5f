#pragma once
// How `walbust dry-run` prints a change and the actions the rules derive from it
// (README "Try your rules safely"): one JSON object per line, or a readable block of text.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "walbust/core/change.h"
#include "walbust/core/rules.h"

namespace walbust {

// What Redis said about one action under --check-redis.
struct ActionProbe {
  bool exists = false;
  // Patterns: keys matching, counted by SCAN up to `scan_limit` keys.
  std::size_t matches = 0;
  bool truncated = false;
};

struct DryRunSummary {
  std::uint64_t changes = 0;
  std::uint64_t matched = 0;   // changes with at least one action
  std::uint64_t keys = 0;      // actions printed (keys and patterns)
  std::uint64_t existing = 0;  // with --check-redis: actions whose key existed
  bool checked_redis = false;
};

// Appends a change's published keys as Publish actions (key: the key or TRUNCATE pattern;
// event: its channel or stream), once per destination and key, to print with the rest.
void append_publish_actions(const RuleSet& rules, const std::vector<PublishedKey>& published,
                            std::vector<Action>& actions);

// Columns whose value differs between the old and the new row of an update; nullopt when
// that cannot be known (not an update, no old row, or a value that was not sent).
[[nodiscard]] std::optional<std::vector<std::string>> changed_columns(const Change& change);

// Whether `walbust run` deletes this action again once read replicas replayed it.
[[nodiscard]] inline bool repeated_after_replay(const Action& a) {
  return a.after_replay && a.kind != ActionKind::BumpVersion;
}

// One line of JSON (no trailing newline). `probes` is empty without --check-redis,
// otherwise aligned with `actions`. Bytes that are not UTF-8 are replaced (U+FFFD).
// `replicas`: read replicas are configured, so each action says whether it is repeated
// after they replayed the commit ("after_replay").
[[nodiscard]] std::string format_change_json(const Change& change,
                                             const std::vector<Action>& actions,
                                             const RuleSet& rules,
                                             const std::vector<ActionProbe>& probes,
                                             std::size_t scan_limit, bool replicas = false);
[[nodiscard]] std::string format_summary_json(const DryRunSummary& summary);

// A block of lines, ending with a newline.
[[nodiscard]] std::string format_change_text(const Change& change,
                                             const std::vector<Action>& actions,
                                             const RuleSet& rules,
                                             const std::vector<ActionProbe>& probes,
                                             std::size_t scan_limit, bool replicas = false);
[[nodiscard]] std::string format_summary_text(const DryRunSummary& summary);

}  // namespace walbust
