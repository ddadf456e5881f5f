#include "walbust/core/change_stream.h"

#include <utility>
#include <variant>

#include "walbust/core/pgoutput.h"

namespace walbust {
namespace {

std::string table_suffix(const Relation* relation) {
  return relation ? " on table " + relation->qualified_name() : std::string();
}

}  // namespace

void ChangeStream::reset() {
  relations_.clear();
  in_transaction_ = false;
  current_ = TransactionBegin{};
}

void ChangeStream::feed(std::string_view data, Lsn lsn, ChangeHandler& handler) {
  // Every error names the message, its LSN and, when known, the table.
  const auto fail = [&](const Relation* relation, const std::string& detail) {
    throw StreamError(pgoutput::describe_message(data, lsn) + table_suffix(relation) + ": " +
                      detail);
  };

  pgoutput::Message message;
  try {
    message = pgoutput::decode(data, lsn);
  } catch (const pgoutput::DecodeError& e) {
    // Name the table when the relation OID (bytes 1-4 of I/U/D) is readable and known.
    std::string what = e.what();
    if (data.size() >= 5 && (data[0] == 'I' || data[0] == 'U' || data[0] == 'D')) {
      std::uint32_t oid = 0;
      for (int i = 1; i <= 4; ++i) oid = (oid << 8) | static_cast<unsigned char>(data[i]);
      const std::string prefix = pgoutput::describe_message(data, lsn);
      if (const auto relation = relations_.find(oid);
          relation && what.compare(0, prefix.size(), prefix) == 0) {
        what.insert(prefix.size(), table_suffix(relation.get()));
      }
    }
    throw StreamError(what);
  }

  const auto require_transaction = [&](const Relation* relation) {
    if (!in_transaction_) fail(relation, "change outside a transaction (no Begin before it)");
  };
  const auto resolve = [&](std::uint32_t oid) {
    auto relation = relations_.find(oid);
    if (!relation) {
      fail(nullptr,
           "relation OID " + std::to_string(oid) + " was never announced by a Relation message");
    }
    return relation;
  };
  const auto check_columns = [&](const Relation& relation, const Row& row, const char* which) {
    if (row.size() != relation.columns.size()) {
      fail(&relation, std::string(which) + " tuple has " + std::to_string(row.size()) +
                          " columns, relation has " + std::to_string(relation.columns.size()));
    }
  };
  const auto make_change = [&](Op op, std::shared_ptr<const Relation> relation) {
    Change change;
    change.op = op;
    change.relation = std::move(relation);
    change.lsn = lsn;
    change.xid = current_.xid;
    change.commit_lsn = current_.final_lsn;
    change.commit_time_us = current_.commit_time_us;
    return change;
  };
  // A 'K' tuple carries only the replica identity columns; PostgreSQL sends the others as
  // 'n', which does not mean NULL.
  const auto old_row = [](const Relation& relation, char kind, Row&& row) {
    if (kind == 'K') {
      for (std::size_t i = 0; i < row.size(); ++i) {
        if (!relation.columns[i].is_key) row[i] = Value{};
      }
    }
    return std::optional<Row>(std::move(row));
  };

  if (auto* m = std::get_if<pgoutput::Insert>(&message)) {
    auto relation = resolve(m->relation_oid);
    require_transaction(relation.get());
    check_columns(*relation, m->new_tuple, "new");
    Change change = make_change(Op::Insert, relation);
    change.new_row = std::move(m->new_tuple);
    handler.on_change(change);
  } else if (auto* m = std::get_if<pgoutput::Update>(&message)) {
    auto relation = resolve(m->relation_oid);
    require_transaction(relation.get());
    if (m->old_kind != 0) check_columns(*relation, m->old_tuple, "old");
    check_columns(*relation, m->new_tuple, "new");
    Change change = make_change(Op::Update, relation);
    if (m->old_kind != 0) change.old_row = old_row(*relation, m->old_kind, std::move(m->old_tuple));
    change.new_row = std::move(m->new_tuple);
    handler.on_change(change);
  } else if (auto* m = std::get_if<pgoutput::Delete>(&message)) {
    auto relation = resolve(m->relation_oid);
    require_transaction(relation.get());
    check_columns(*relation, m->old_tuple, "old");
    Change change = make_change(Op::Delete, relation);
    change.old_row = old_row(*relation, m->old_kind, std::move(m->old_tuple));
    handler.on_change(change);
  } else if (auto* m = std::get_if<pgoutput::Begin>(&message)) {
    if (in_transaction_) {
      fail(nullptr, "Begin of xid " + std::to_string(m->xid) + " inside transaction " +
                        std::to_string(current_.xid) + " (no Commit before it)");
    }
    current_ = TransactionBegin{m->final_lsn, m->xid, m->commit_time_us};
    in_transaction_ = true;
    handler.on_begin(current_);
  } else if (auto* m = std::get_if<pgoutput::Commit>(&message)) {
    if (!in_transaction_) fail(nullptr, "Commit outside a transaction (no Begin before it)");
    in_transaction_ = false;
    handler.on_commit(
        TransactionCommit{m->commit_lsn, m->end_lsn, current_.xid, m->commit_time_us});
  } else if (auto* m = std::get_if<pgoutput::RelationMessage>(&message)) {
    const std::uint32_t oid = m->relation.oid;
    relations_.put(std::move(m->relation));
    handler.on_relation(*relations_.find(oid));
  } else if (auto* m = std::get_if<pgoutput::Truncate>(&message)) {
    // Resolve every OID first, so an unknown one fails before any change is delivered.
    std::vector<std::shared_ptr<const Relation>> truncated;
    truncated.reserve(m->relation_oids.size());
    for (const std::uint32_t oid : m->relation_oids) truncated.push_back(resolve(oid));
    require_transaction(truncated.empty() ? nullptr : truncated.front().get());
    for (auto& relation : truncated) {
      Change change = make_change(Op::Truncate, std::move(relation));
      change.truncate_options = m->options;
      handler.on_change(change);
    }
  }
  // Origin, Type and logical Message carry nothing walbust acts on.
}

}  // namespace walbust
