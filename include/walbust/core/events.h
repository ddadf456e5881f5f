#pragma once
// Invalidation events for caches inside application processes: the keys every rule of a
// transaction publishes, gathered per channel or stream (and per Redis target), sent as
// one message after the transaction's deletes and in commit order. A message carries
// `{"lsn","xid","keys"}`; a transaction with more keys than fit one message is sent as
// several parts while it streams in (`"part": 1, 2, ...` and `"last"`), so memory stays
// bounded by the part size, never by the transaction (see README "In-process caches").
// Pure logic: the sinks turn an event into its command with event_command().
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "walbust/core/lsn.h"
#include "walbust/core/rules.h"

namespace walbust {

struct PublishEvent {
  PublishDestination destination;
  Lsn lsn = kInvalidLsn;  // the commit record's LSN: the same in every part and on replay
  std::uint32_t xid = 0;
  std::uint32_t part = 0;             // 0: the whole transaction in one message; else 1, 2, ...
  bool last = true;                   // the final part (always true when part is 0)
  std::vector<std::string> keys;      // deduplicated, in first-seen order
  std::vector<std::string> patterns;  // TRUNCATE: globs over final keys
};

// The keys as a JSON array (the stream's `keys` field); bytes that are not UTF-8 are
// replaced by U+FFFD.
[[nodiscard]] std::string event_keys_json(const std::vector<std::string>& keys);
// The PUBLISH payload: {"lsn":"0/1A2B3C8","xid":745,["part":1,"last":false,]"keys":[...]
// [,"patterns":[...]]}.
[[nodiscard]] std::string event_json(const PublishEvent& event);
// PUBLISH channel JSON, or XADD stream MAXLEN ~ N * lsn L xid X keys [...] (then part,
// last and patterns when present): the argv the sinks send.
[[nodiscard]] std::vector<std::string> event_command(const PublishEvent& event);

// One action for one Redis target.
struct TargetedAction {
  std::size_t target = 0;
  Action action;
};

class EventBuilder {
 public:
  // A part holds at most max_keys keys and patterns, or about max_bytes of them.
  static constexpr std::size_t kMaxKeys = 1000;
  static constexpr std::size_t kMaxBytes = 256 * 1024;
  // Keys are deduplicated across parts until about this many parts' worth were seen.
  static constexpr std::size_t kSeenParts = 8;
  explicit EventBuilder(std::size_t max_keys = kMaxKeys, std::size_t max_bytes = kMaxBytes);
  ~EventBuilder();
  EventBuilder(const EventBuilder&) = delete;
  EventBuilder& operator=(const EventBuilder&) = delete;

  // Starts a transaction; anything gathered for an unfinished one is dropped.
  void begin(Lsn commit_lsn, std::uint32_t xid);
  // Adds one change's published keys. rule_targets[rule] has bit t set when the rule's
  // actions go to target t. A full part is appended to `out` (as a Publish action for its
  // target) once one more key arrives for it: whatever the change deleted before is
  // already ahead of it in `out`'s target queue.
  void add(const RuleSet& rules, const std::vector<PublishedKey>& keys,
           const std::vector<std::uint64_t>& rule_targets, std::vector<TargetedAction>& out);
  // The transaction's remaining messages (the last part of each), to follow its deletes.
  void commit(std::vector<TargetedAction>& out);
  // Forget the open transaction (the connection was lost; PostgreSQL resends it).
  void reset();

 private:
  struct Group;
  Group& group(const PublishDestination& dest, std::size_t target, std::uint32_t rule);
  void emit(Group& g, bool last, std::vector<TargetedAction>& out);

  std::size_t max_keys_;
  std::size_t max_bytes_;
  std::size_t max_seen_;
  Lsn lsn_ = kInvalidLsn;
  std::uint32_t xid_ = 0;
  std::vector<Group> groups_;
};

}  // namespace walbust
