#include "walbust/core/replay_queue.h"

#include <algorithm>

namespace walbust {

ReplayQueue::ReplayQueue(Settings settings)
    : settings_(settings), replicas_(std::max<std::size_t>(settings.replicas, 1)) {
  settings_.transaction_keys = std::max<std::size_t>(settings_.transaction_keys, 1);
}

void ReplayQueue::begin(Lsn final_lsn, Clock::time_point now) {
  abandon();
  // A replay position is a record boundary: past the commit record's start is past its end.
  open_skipped_ = replayed_before(final_lsn + 1, now);
}

void ReplayQueue::add(const Action& action, std::uint64_t targets) {
  // Only deletes are repeated: a version key already holds the commit LSN, and an event is
  // a message, not cache state.
  const bool repeatable =
      action.kind == ActionKind::Delete || action.kind == ActionKind::DeletePattern;
  if (open_skipped_ || !action.after_replay || !repeatable || targets == 0) return;
  open_rules_[action.rule] |= targets;
  if (open_overflowed_) return;
  auto& seen = action.kind == ActionKind::Delete ? open_keys_ : open_patterns_;
  if (const auto it = seen.find(action.key); it != seen.end()) {
    it->second->targets |= targets;
    return;
  }
  if (open_.size() >= settings_.transaction_keys) {
    // Past the limit the keys themselves are dropped and the rules' templates, as
    // patterns, are repeated instead: more is deleted, nothing is missed.
    open_overflowed_ = true;
    open_keys_.clear();
    open_patterns_.clear();
    open_.clear();
    return;
  }
  open_.push_back(HeldAction{action.kind, targets, action.key});
  seen.emplace(open_.back().key, &open_.back());
}

void ReplayQueue::convert_to_patterns(const RuleSet& rules, std::vector<HeldAction>& out) const {
  for (const auto& [rule, targets] : open_rules_) {
    for (auto& a : rules.patterns_of(rule))
      out.push_back(HeldAction{a.kind, targets, std::move(a.key)});
  }
}

void ReplayQueue::commit(Ticket ticket, Lsn end_lsn, std::int64_t commit_time_us,
                         Clock::time_point now, const RuleSet& rules) {
  Entry e{
      ticket, end_lsn,         commit_time_us, now + settings_.max_wait, Clock::time_point::max(),
      {},     open_overflowed_};
  if (open_overflowed_) {
    ++overflows_;
    convert_to_patterns(rules, e.actions);
  } else {
    e.actions.reserve(open_.size());
    for (auto& a : open_) e.actions.push_back(std::move(a));
  }
  // Entries stay ordered by LSN and deadline, so only the front can ever be due first.
  if (!entries_.empty()) {
    e.end_lsn = std::max(e.end_lsn, entries_.back().end_lsn);
    e.deadline = std::max(e.deadline, entries_.back().deadline);
  }
  if (open_skipped_ || replayed_before(e.end_lsn, now)) {
    // Every replica had this commit for `grace` already when it was read: a stale refill
    // from them happened before the first delete, which is sent after this moment.
    e.actions.clear();
    ++skipped_;
  }
  held_ += e.actions.size();
  if (!e.actions.empty()) {
    ++waiting_with_keys_;
    last_with_keys_ = e.end_lsn;
  }
  entries_.push_back(std::move(e));
  abandon();
  // A replica already known to be past this commit has replayed it.
  for (std::size_t r = 0; r < replicas_.size(); ++r) advance(r, nullptr);
  mark_replayed();
}

bool ReplayQueue::replayed_before(Lsn end_lsn, Clock::time_point now) const {
  Clock::time_point at{};
  for (const auto& r : replicas_) {
    if (r.lsn == kInvalidLsn || r.lsn < end_lsn) return false;
    at = std::max(at, r.at);
  }
  return at + settings_.grace <= now;
}

void ReplayQueue::abandon() {
  open_keys_.clear();
  open_patterns_.clear();
  open_.clear();
  open_rules_.clear();
  open_overflowed_ = false;
  open_skipped_ = false;
}

void ReplayQueue::observe(std::size_t replica, Lsn lsn, Clock::time_point at,
                          std::vector<std::int64_t>& replayed) {
  if (replica >= replicas_.size()) return;
  auto& r = replicas_[replica];
  // A restarted replica may report less than before; what it replayed stays replayed.
  if (lsn >= r.lsn) {
    r.lsn = lsn;
    r.at = std::max(r.at, at);
  }
  advance(replica, &replayed);
  mark_replayed();
}

void ReplayQueue::advance(std::size_t index, std::vector<std::int64_t>* replayed) {
  auto& r = replicas_[index];
  while (r.passed < entries_.size() && r.lsn != kInvalidLsn &&
         entries_[r.passed].end_lsn <= r.lsn) {
    if (replayed != nullptr) replayed->push_back(entries_[r.passed].commit_time_us);
    ++r.passed;
  }
}

void ReplayQueue::mark_replayed() {
  std::size_t everywhere = entries_.size();
  Clock::time_point at{};
  for (const auto& r : replicas_) {
    everywhere = std::min(everywhere, r.passed);
    at = std::max(at, r.at);
  }
  // The newest report time of any replica is no earlier than each one's first report
  // past these entries: grace may start late, never early.
  for (; marked_ < everywhere; ++marked_) {
    auto& e = entries_[marked_];
    e.due = at + settings_.grace;
    if (marked_ > 0) e.due = std::max(e.due, entries_[marked_ - 1].due);
  }
}

bool ReplayQueue::pop(Clock::time_point now, Released& out) {
  if (entries_.empty()) return false;
  Entry& e = entries_.front();
  const bool nothing_to_repeat = e.actions.empty();
  const bool replayed = marked_ > 0 && e.due <= now;
  const bool timed_out = !replayed && !nothing_to_repeat && e.deadline <= now;
  if (!nothing_to_repeat && !replayed && !timed_out) return false;
  out.ticket = e.ticket;
  out.end_lsn = e.end_lsn;
  out.actions = std::move(e.actions);
  out.overflowed = e.overflowed;
  out.timed_out.clear();
  for (std::size_t r = 0; r < replicas_.size(); ++r) {
    if (timed_out && replicas_[r].passed == 0) out.timed_out.push_back(r);
    if (replicas_[r].passed > 0) --replicas_[r].passed;
  }
  if (marked_ > 0) --marked_;
  held_ -= out.actions.size();
  if (!out.actions.empty()) --waiting_with_keys_;
  entries_.pop_front();
  return true;
}

ReplayQueue::Clock::time_point ReplayQueue::next_due() const {
  if (entries_.empty()) return Clock::time_point::max();
  const Entry& e = entries_.front();
  if (e.actions.empty()) return Clock::time_point::min();
  return marked_ > 0 ? std::min(e.due, e.deadline) : e.deadline;
}

std::int64_t ReplayQueue::oldest_unreplayed_us(std::size_t replica) const {
  const std::size_t passed = replicas_[replica].passed;
  return passed < entries_.size() ? entries_[passed].commit_time_us : 0;
}

}  // namespace walbust
