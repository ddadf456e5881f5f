#pragma once
// Invalidation rules (README "Writing rules"): parsed from YAML rules files, validated completely,
// and applied to row changes to produce the Redis actions (keys to delete, patterns to scan,
// version keys to bump) and the keys a rule publishes for in-process caches (see
// events.h, which gathers them into one event per transaction). Pure logic: callers read
// files and pass their text.
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "walbust/core/change.h"
#include "walbust/core/diagnostics.h"

namespace walbust {

// Publish: one invalidation event (PUBLISH or XADD), built per transaction by
// EventBuilder, never by RuleSet::plan.
enum class ActionKind : std::uint8_t { Delete, DeletePattern, BumpVersion, Publish };
// "delete", "delete_pattern", "bump_version", "publish"
[[nodiscard]] std::string_view action_name(ActionKind kind);

struct PublishEvent;  // events.h

struct Action {
  ActionKind kind = ActionKind::Delete;
  std::uint32_t rule = 0;  // index into RuleSet::rules()
  std::string key;         // the final Redis key (Delete, BumpVersion), SCAN pattern, or
                           // the channel or stream (Publish)
  std::string value;       // BumpVersion: the commit LSN as a decimal integer
  std::uint32_t redelete_after_ms = 0;  // 0: no second delete
  // Repeated once read replicas replayed the transaction (unless the rule opted out).
  bool after_replay = true;
  // Publish: the event; shared, so every target's copy of the action costs a pointer.
  std::shared_ptr<const PublishEvent> event;

  friend bool operator==(const Action&, const Action&) = default;
};

// A template that could not be rendered for a change. reason is one of "null",
// "unchanged_toast", "old_row_unavailable", "unknown_column".
struct RenderFailure {
  std::uint32_t rule = 0;
  std::string reason;
  std::string column;
};

// Where a rule publishes: a pub/sub channel (PUBLISH) or a stream (XADD MAXLEN ~).
enum class PublishKind : std::uint8_t { Channel, Stream };
[[nodiscard]] std::string_view publish_kind_name(PublishKind kind);  // "channel", "stream"

// A stream without `maxlen` keeps about this many entries (XADD MAXLEN ~).
inline constexpr std::uint64_t kDefaultStreamMaxlen = 100000;

struct PublishDestination {
  PublishKind kind = PublishKind::Channel;
  std::string name;
  std::uint64_t maxlen = 0;  // Stream: approximate length kept

  friend bool operator==(const PublishDestination&, const PublishDestination&) = default;
};

// One key (or, for TRUNCATE, one glob pattern over final keys) a change makes a rule
// publish to its `publish` entry `destination` (index into RuleInfo::publish).
struct PublishedKey {
  std::uint32_t rule = 0;
  std::uint32_t destination = 0;
  std::string key;
  bool pattern = false;

  friend bool operator==(const PublishedKey&, const PublishedKey&) = default;
};

struct RuleSource {
  std::string path;  // used in diagnostics
  std::string text;  // YAML
};

// What a rule set needs from one table, for `setup` and `check --db`.
struct TableNeeds {
  std::string schema;
  std::string name;
  std::set<std::string> columns;  // every column any rule names (templates, filters)
  // Previous values are needed explicitly ({old.x}, changed, ignore_changes, when).
  bool needs_old_row = false;
  // Columns rendered with plain {x} by rules that fire on update or delete: their
  // previous value is needed unless x is in the replica identity.
  std::set<std::string> old_value_columns;
  std::set<Op> ops;  // operations any rule on this table listens to
};

struct Rule;  // defined in rules.cpp; see RuleInfo for what callers may read

struct RuleInfo {
  std::string name;
  std::string file;
  int line = 0;
  std::string schema;
  std::string table;
  std::vector<std::string> targets;  // empty: every target
  std::vector<PublishDestination> publish;
};

class RuleSet {
 public:
  RuleSet();
  ~RuleSet();
  RuleSet(RuleSet&&) noexcept;
  RuleSet& operator=(RuleSet&&) noexcept;

  // Parses and validates every file (in the order given; callers sort). Every problem is
  // added to `diags` with file:line:column. When diags is non-empty afterwards the
  // returned set must not be used.
  [[nodiscard]] static RuleSet load(const std::vector<RuleSource>& files, Diagnostics& diags);

  // Appends the actions a change causes. Identical (kind, key) pairs are produced once
  // per change (attributed to the first rule, with the longest redelete_after, repeated after
  // replay when any of the rules asks for it). Templates
  // that cannot be rendered are skipped and reported in `failures` (when not null).
  // Never throws on any row content. Where an update's previous values are unknown (no
  // old row, or a value not sent), changed/ignore_changes/when match: err toward deleting.
  // TRUNCATE ignores changed/ignore_changes/when and yields patterns (see rules.cpp).
  // Keys to publish go to `published` (when not null): a publish entry without `keys:`
  // publishes the rule's delete keys (fragments included), before cross-rule dedup.
  void plan(const Change& change, std::vector<Action>& out,
            std::vector<RenderFailure>* failures = nullptr,
            std::vector<PublishedKey>* published = nullptr) const;

  // plan() with the rules written for table schema.table, whatever the change's relation
  // is called now: RuleBinding routes a renamed table or a partition to its rules' table.
  void plan_table(std::string_view schema, std::string_view table, const Change& change,
                  std::vector<Action>& out, std::vector<RenderFailure>* failures = nullptr,
                  std::vector<PublishedKey>* published = nullptr) const;

  // True when any rule listens to this table (for any op).
  [[nodiscard]] bool watches(std::string_view schema, std::string_view table) const;

  [[nodiscard]] std::size_t size() const;
  [[nodiscard]] const RuleInfo& rule(std::uint32_t index) const;
  [[nodiscard]] std::vector<TableNeeds> table_needs() const;  // sorted by schema, name
  // Every column rule `index` names, in templates and filters.
  [[nodiscard]] std::set<std::string> rule_columns(std::uint32_t index) const;

  // Every key any rule could produce, as patterns (placeholders → '*') or plain keys:
  // what `on_gap: flush_rules` deletes. Rule indexes are set; value empty (a constant
  // bump_version key comes back as BumpVersion: the caller sets the LSN it resumes at).
  [[nodiscard]] std::vector<Action> all_keys_as_patterns() const;
  // The same for one rule, not deduplicated against other rules (audit names every rule
  // that covers a key).
  [[nodiscard]] std::vector<Action> rule_keys_as_patterns(std::uint32_t index) const;
  // One rule's delete, delete_pattern and fragment templates as patterns, without its
  // version keys: what stands in for a transaction's keys too many to hold one by one.
  [[nodiscard]] std::vector<Action> patterns_of(std::uint32_t rule) const;

 private:
  struct TableIndex;  // rules by (schema, table), so plan() looks at candidates only

  std::vector<std::unique_ptr<Rule>> rules_;
  std::unique_ptr<TableIndex> tables_;
};

}  // namespace walbust
