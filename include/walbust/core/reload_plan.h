#pragma once
// What a reload (SIGHUP) applies to the running daemon and what it must report instead. A
// reload applies the rules, on_gap and log at once; every other setting is bound to an open
// connection, a thread or a file and takes effect only after a restart. Every setting outside
// the reloadable ones that differs is named, so a running daemon never keeps an old value in
// silence; the comparison is whole-struct, so a setting added later is covered too.
#include <cstdint>
#include <string>
#include <vector>

#include "walbust/core/rules.h"
#include "walbust/core/settings.h"

namespace walbust {

// Bit i set: rule r sends its actions to targets[i]. A rule without targets: every target.
// A rule naming only targets that are not in `targets` gets no bit (see rules_sending_nowhere).
[[nodiscard]] std::vector<std::uint64_t> rule_target_masks(const RuleSet& rules,
                                                           const std::vector<RedisTarget>& targets);

// The names of the rules whose mask has no bit: after a reload that added a target and a rule
// for it, that rule deletes nothing until a restart starts the target.
[[nodiscard]] std::vector<std::string> rules_sending_nowhere(
    const RuleSet& rules, const std::vector<std::uint64_t>& masks);

// Copies what a reload applies (rules, on_gap, log) from `loaded` into `running`.
void take_reloadable(Config& running, const Config& loaded);

// The config keys whose loaded value differs from the running one and that a reload cannot
// apply: "postgres", "redis" (the plain redis: section) or "targets.NAME" (a target added,
// removed or changed), with ".tls", ".wait" or ".sentinel" when only that part changed,
// "batch", "state_dir", "metrics.listen", "replicas", and "other settings" for anything else.
// Empty: the reload applies everything that changed.
[[nodiscard]] std::vector<std::string> restart_only_changes(const Config& running,
                                                            const Config& loaded);

}  // namespace walbust
