#pragma once
// Decides the one LSN walbust reports to PostgreSQL as flushed. The stream tells it about
// transactions and keepalives, the Redis targets about what Redis confirmed; nothing else
// computes acknowledgement positions. Not thread-safe, and needs not be: the stream and
// the targets' fibers share one thread.
//
// Rules (docs/design.md, "The acknowledgement invariant"):
//  - a transaction's end LSN may be reported once every target confirmed all its keys,
//    and all earlier transactions' keys;
//  - a keepalive's walEnd may be reported once everything sent before it is confirmed and
//    no transaction was open when it arrived (it covers transactions PostgreSQL skipped
//    because they touched no published table, so an idle slot keeps advancing);
//  - with read replicas, a transaction also waits until every target confirmed its
//    deletes repeated after the replicas replayed it (confirm_replayed), so a crash
//    repeats them instead of losing them;
//  - the reported position never moves backwards.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include "walbust/core/lsn.h"

namespace walbust {

class AckTracker {
 public:
  using Ticket = std::uint64_t;

  // `after_replay`: every transaction also needs confirm_replayed() from every target.
  explicit AckTracker(std::size_t targets = 1, bool after_replay = false);

  // The position the stream starts from (the slot's confirmed_flush_lsn): reported until
  // something newer is confirmed.
  void start_from(Lsn lsn);

  // The stream's side.
  void begin();
  // A transaction's Commit was read and all its actions handed to the targets. Returns the
  // ticket the targets confirm once they processed everything up to this commit.
  [[nodiscard]] Ticket commit(Lsn end_lsn);
  void keepalive(Lsn wal_end);
  // The connection was lost inside a transaction: it will be resent, forget it.
  void abandon_transaction();

  // A target's side: target `target` confirmed every action up to and including `ticket`.
  void confirm(std::size_t target, Ticket ticket);
  // Target `target` confirmed the deletes repeated after replay of every transaction up to
  // and including `ticket`.
  void confirm_replayed(std::size_t target, Ticket ticket);

  // The position to send as flush (and write/apply) in standby status updates.
  [[nodiscard]] Lsn flush_lsn() const;
  // True when no transaction is open and every issued ticket is confirmed.
  [[nodiscard]] bool idle() const;
  [[nodiscard]] bool in_transaction() const;
  // Number of committed transactions not yet confirmed by every target.
  [[nodiscard]] std::size_t pending() const;

 private:
  struct Entry {
    Ticket ticket;  // safe once every target confirmed this ticket
    Lsn lsn;
  };
  void advance();
  void confirm_column(std::size_t column, Ticket ticket);

  std::size_t targets_;
  // One column per target, then (with replicas) one per target for the repeated deletes.
  std::vector<Ticket> confirmed_;
  std::deque<Entry> entries_;
  Ticket issued_ = 0;
  Lsn flush_ = kInvalidLsn;
  bool in_transaction_ = false;
};

}  // namespace walbust
