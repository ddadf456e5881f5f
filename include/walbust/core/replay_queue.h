#pragma once
// Transactions whose deletes are repeated once every read replica replayed them (the
// `replicas:` section). A reader that missed the cache and read a replica still behind the
// commit writes the old row back after the first delete; repeating the delete once the
// replicas have the commit, plus `grace` for such a reader to finish, removes it.
//
// Contract:
//  - transactions leave in commit order, each once every replica reported a replay
//    position >= its end LSN and `grace` passed since that was observed, or once
//    `max_wait` passed since it was committed (then every lagging replica is reported);
//  - a transaction with nothing to repeat leaves as soon as it is at the front, and so
//    does one read when every replica had replayed it `grace` ago (its first delete,
//    sent after that, already removes whatever a reader of the replicas wrote);
//  - bump_version actions and actions whose rules opted out are never held;
//  - memory is bounded: a transaction holding more than `transaction_keys` distinct keys
//    is held as its rules' templates as patterns instead (coarser, never lost), and
//    full() says when the committed transactions hold `total_keys`, so the caller stops
//    reading until some leave.
// Pure: no I/O, no clock of its own (every time is passed in), no locking.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "walbust/core/lsn.h"
#include "walbust/core/rules.h"

namespace walbust {

struct HeldAction {
  ActionKind kind = ActionKind::Delete;  // Delete or DeletePattern
  std::uint64_t targets = 0;             // bit i: Redis target i takes it
  std::string key;
};

class ReplayQueue {
 public:
  using Clock = std::chrono::steady_clock;
  using Ticket = std::uint64_t;

  struct Settings {
    std::size_t replicas = 1;
    std::chrono::milliseconds grace{100};
    std::chrono::milliseconds max_wait{30000};
    std::size_t transaction_keys = 100000;
    std::size_t total_keys = 200000;
  };

  // A transaction that may be repeated now.
  struct Released {
    Ticket ticket = 0;
    Lsn end_lsn = kInvalidLsn;
    std::vector<HeldAction> actions;
    std::vector<std::size_t> timed_out;  // replicas that had not replayed it (max_wait)
    bool overflowed = false;             // held as its rules' patterns
  };

  explicit ReplayQueue(Settings settings);

  // The open transaction, whose commit record starts at `final_lsn`. When every replica
  // had replayed it `grace` before `now`, nothing of it is held (see skipped()).
  void begin(Lsn final_lsn, Clock::time_point now);
  // Keeps the action when it is to be repeated.
  void add(const Action& action, std::uint64_t targets);
  // Ends the open transaction. `rules` turns an overflowed transaction into patterns.
  void commit(Ticket ticket, Lsn end_lsn, std::int64_t commit_time_us, Clock::time_point now,
              const RuleSet& rules);
  // The connection was lost inside the transaction: it will be resent, forget it.
  void abandon();

  // Replica `replica` reported replay position `lsn` at `at`. Appends to `replayed` the
  // commit times of the transactions this replica replayed since its previous report.
  void observe(std::size_t replica, Lsn lsn, Clock::time_point at,
               std::vector<std::int64_t>& replayed);

  // Moves the front transaction into `out` when it may be repeated at `now`.
  [[nodiscard]] bool pop(Clock::time_point now, Released& out);
  // When pop() may next return true without a new observation; max() when never.
  [[nodiscard]] Clock::time_point next_due() const;

  // The end LSN of the newest waiting transaction that has something to repeat, or
  // kInvalidLsn: replicas need to be asked only while one of them is behind it.
  [[nodiscard]] Lsn wanted() const {
    return waiting_with_keys_ > 0 ? last_with_keys_ : kInvalidLsn;
  }
  [[nodiscard]] Lsn replica_lsn(std::size_t replica) const { return replicas_[replica].lsn; }
  // Commit time of the oldest waiting transaction this replica has not replayed, or 0.
  [[nodiscard]] std::int64_t oldest_unreplayed_us(std::size_t replica) const;

  [[nodiscard]] bool full() const { return held_ >= settings_.total_keys; }
  [[nodiscard]] bool empty() const { return entries_.empty(); }
  [[nodiscard]] std::size_t size() const { return entries_.size(); }
  [[nodiscard]] std::size_t held_keys() const { return held_; }
  [[nodiscard]] std::size_t open_keys() const { return open_.size(); }
  [[nodiscard]] std::uint64_t overflows() const { return overflows_; }
  // Transactions read after every replica had replayed them for `grace` already: their
  // first delete comes after any stale refill, so nothing is repeated.
  [[nodiscard]] std::uint64_t skipped() const { return skipped_; }

 private:
  struct Entry {
    Ticket ticket;
    Lsn end_lsn;
    std::int64_t commit_time_us;
    Clock::time_point deadline;                        // committed + max_wait
    Clock::time_point due = Clock::time_point::max();  // replayed everywhere + grace
    std::vector<HeldAction> actions;
    bool overflowed = false;
  };
  struct Replica {
    Lsn lsn = kInvalidLsn;
    Clock::time_point at{};
    std::size_t passed = 0;  // front entries this replica has replayed
  };
  // Advances replica `r` over the entries its last report covers; then marks entries
  // every replica passed with their due time.
  void advance(std::size_t r, std::vector<std::int64_t>* replayed);
  void mark_replayed();
  void convert_to_patterns(const RuleSet& rules, std::vector<HeldAction>& out) const;
  [[nodiscard]] bool replayed_before(Lsn end_lsn, Clock::time_point now) const;

  Settings settings_;
  std::deque<Entry> entries_;
  std::vector<Replica> replicas_;
  std::size_t marked_ = 0;  // front entries replayed everywhere (their due is set)
  std::size_t held_ = 0;    // keys held by committed entries
  std::size_t waiting_with_keys_ = 0;
  Lsn last_with_keys_ = kInvalidLsn;
  std::uint64_t overflows_ = 0;
  std::uint64_t skipped_ = 0;

  // The open transaction: deque for stable addresses, so the sets can view its keys.
  std::deque<HeldAction> open_;
  std::unordered_map<std::string_view, HeldAction*> open_keys_;
  std::unordered_map<std::string_view, HeldAction*> open_patterns_;
  std::map<std::uint32_t, std::uint64_t> open_rules_;  // rule → targets, for overflow
  bool open_overflowed_ = false;
  bool open_skipped_ = false;  // replayed everywhere long enough ago: hold nothing
};

}  // namespace walbust
