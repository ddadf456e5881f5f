#include "walbust/core/ack_tracker.h"

#include <algorithm>
#include <stdexcept>

namespace walbust {

AckTracker::AckTracker(std::size_t targets, bool after_replay)
    : targets_(targets == 0 ? 1 : targets), confirmed_(targets_ * (after_replay ? 2 : 1), 0) {}

void AckTracker::start_from(Lsn lsn) { flush_ = std::max(flush_, lsn); }

void AckTracker::begin() { in_transaction_ = true; }

AckTracker::Ticket AckTracker::commit(Lsn end_lsn) {
  in_transaction_ = false;
  const Ticket ticket = ++issued_;
  // Entries stay ordered by LSN: a commit never precedes what was already queued.
  const Lsn last = entries_.empty() ? flush_ : entries_.back().lsn;
  entries_.push_back(Entry{ticket, std::max(end_lsn, last)});
  advance();
  return ticket;
}

void AckTracker::keepalive(Lsn wal_end) {
  if (in_transaction_) return;  // walEnd may lie inside the open transaction
  const Lsn last = entries_.empty() ? flush_ : entries_.back().lsn;
  if (wal_end <= last) return;
  // Safe once everything issued so far is confirmed (ticket 0: nothing to wait for). When
  // the newest entry waits for the same ticket, moving it forward is equivalent and keeps
  // the queue from growing with keepalives.
  if (!entries_.empty() && entries_.back().ticket == issued_) {
    entries_.back().lsn = wal_end;
  } else {
    entries_.push_back(Entry{issued_, wal_end});
  }
  advance();
}

void AckTracker::abandon_transaction() { in_transaction_ = false; }

void AckTracker::confirm(std::size_t target, Ticket ticket) {
  if (target >= targets_) throw std::out_of_range("AckTracker::confirm: unknown target");
  confirm_column(target, ticket);
}

void AckTracker::confirm_replayed(std::size_t target, Ticket ticket) {
  if (target >= targets_ || confirmed_.size() == targets_) {
    throw std::out_of_range("AckTracker::confirm_replayed: unknown target or no replicas");
  }
  confirm_column(targets_ + target, ticket);
}

void AckTracker::confirm_column(std::size_t column, Ticket ticket) {
  confirmed_[column] = std::max(confirmed_[column], ticket);
  advance();
}

void AckTracker::advance() {
  const Ticket done = *std::min_element(confirmed_.begin(), confirmed_.end());
  while (!entries_.empty() && entries_.front().ticket <= done) {
    flush_ = std::max(flush_, entries_.front().lsn);
    entries_.pop_front();
  }
}

Lsn AckTracker::flush_lsn() const { return flush_; }

bool AckTracker::idle() const {
  const Ticket done = *std::min_element(confirmed_.begin(), confirmed_.end());
  return !in_transaction_ && done >= issued_;
}

bool AckTracker::in_transaction() const { return in_transaction_; }

std::size_t AckTracker::pending() const {
  const Ticket done = *std::min_element(confirmed_.begin(), confirmed_.end());
  return static_cast<std::size_t>(issued_ - std::min(issued_, done));
}

}  // namespace walbust
