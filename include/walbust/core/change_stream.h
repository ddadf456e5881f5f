#pragma once
// Turns a sequence of pgoutput messages into transactions of resolved row changes:
// keeps the relation cache, attaches transaction context (xid, commit LSN and time) to
// every change, and turns 'K' old tuples into rows whose non-key columns are Absent.
#include <cstdint>
#include <stdexcept>
#include <string_view>

#include "walbust/core/change.h"
#include "walbust/core/lsn.h"
#include "walbust/core/relation_cache.h"

namespace walbust {

// Stream data that cannot be interpreted: a decode error, a change for a relation never
// announced, a tuple whose column count differs from its relation, a change outside a
// transaction. what() names the LSN, the message type and, when known, the table.
class StreamError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct TransactionBegin {
  Lsn final_lsn = 0;
  std::uint32_t xid = 0;
  std::int64_t commit_time_us = 0;
};

struct TransactionCommit {
  Lsn commit_lsn = 0;
  Lsn end_lsn = 0;
  std::uint32_t xid = 0;
  std::int64_t commit_time_us = 0;
};

class ChangeHandler {
 public:
  virtual ~ChangeHandler() = default;
  virtual void on_begin(const TransactionBegin& begin) = 0;
  // One call per row change; TRUNCATE gives one change per truncated relation, without rows.
  virtual void on_change(const Change& change) = 0;
  virtual void on_commit(const TransactionCommit& commit) = 0;
  virtual void on_relation(const Relation& /*relation*/) {}
};

class ChangeStream {
 public:
  // Decodes one XLogData payload at `lsn` and calls the handler. Throws StreamError.
  void feed(std::string_view data, Lsn lsn, ChangeHandler& handler);

  [[nodiscard]] bool in_transaction() const { return in_transaction_; }
  [[nodiscard]] const RelationCache& relations() const { return relations_; }
  // Forget relations and any open transaction (after a reconnect the server re-sends
  // Relation messages before first use in the new session).
  void reset();

 private:
  class Feed;  // one message on its way through feed(), defined in change_stream.cpp

  RelationCache relations_;
  bool in_transaction_ = false;
  TransactionBegin current_{};
};

}  // namespace walbust
