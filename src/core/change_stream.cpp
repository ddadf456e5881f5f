#include "walbust/core/change_stream.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "walbust/core/pgoutput.h"

namespace walbust {
namespace {

std::string table_suffix(const Relation* relation) {
  return relation ? " on table " + relation->qualified_name() : std::string();
}

// A 'K' tuple carries only the replica identity columns; PostgreSQL sends the others as
// 'n', which does not mean NULL.
std::optional<Row> old_row(const Relation& relation, char kind, Row&& row) {
  if (kind == 'K') {
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (!relation.columns[i].is_key) row[i] = Value{};
    }
  }
  return std::optional<Row>(std::move(row));
}

}  // namespace

void ChangeStream::reset() {
  relations_.clear();
  in_transaction_ = false;
  current_ = TransactionBegin{};
}

// One message on its way: decoded, checked against the open transaction and the relation
// cache, and handed on. Its bytes and LSN name every error.
class ChangeStream::Feed {
 public:
  Feed(ChangeStream& stream, std::string_view data, Lsn lsn, ChangeHandler& handler)
      : stream_(stream), data_(data), lsn_(lsn), handler_(handler) {}

  pgoutput::Message decode() const;
  void apply(pgoutput::Message& message) {
    std::visit([this](auto& m) { on(m); }, message);
  }

 private:
  [[noreturn]] void fail(const Relation* relation, const std::string& detail) const {
    throw StreamError(pgoutput::describe_message(data_, lsn_) + table_suffix(relation) + ": " +
                      detail);
  }
  std::string with_table(std::string what) const;
  std::shared_ptr<const Relation> resolve(std::uint32_t oid) const;
  void require_transaction(const Relation* relation) const;
  void check_columns(const Relation& relation, const Row& row, const char* which) const;
  Change make_change(Op op, std::shared_ptr<const Relation> relation) const;

  void on(pgoutput::Insert& m);
  void on(pgoutput::Update& m);
  void on(pgoutput::Delete& m);
  void on(pgoutput::Truncate& m);
  void on(pgoutput::Begin& m);
  void on(pgoutput::Commit& m);
  void on(pgoutput::RelationMessage& m);
  // Origin, Type and logical Message carry nothing walbust acts on.
  template <typename Other>
  void on(Other& /*m*/) {}

  ChangeStream& stream_;
  std::string_view data_;
  Lsn lsn_;
  ChangeHandler& handler_;
};

pgoutput::Message ChangeStream::Feed::decode() const {
  try {
    return pgoutput::decode(data_, lsn_);
  } catch (const pgoutput::DecodeError& e) {
    throw StreamError(with_table(e.what()));
  }
}

// Names the table in a decode error when the relation OID (bytes 1-4 of I/U/D) is readable
// and known.
std::string ChangeStream::Feed::with_table(std::string what) const {
  if (data_.size() < 5 || (data_[0] != 'I' && data_[0] != 'U' && data_[0] != 'D')) return what;
  std::uint32_t oid = 0;
  for (int i = 1; i <= 4; ++i) oid = (oid << 8) | static_cast<unsigned char>(data_[i]);
  const std::string prefix = pgoutput::describe_message(data_, lsn_);
  if (const auto relation = stream_.relations_.find(oid);
      relation && what.compare(0, prefix.size(), prefix) == 0) {
    what.insert(prefix.size(), table_suffix(relation.get()));
  }
  return what;
}

std::shared_ptr<const Relation> ChangeStream::Feed::resolve(std::uint32_t oid) const {
  auto relation = stream_.relations_.find(oid);
  if (!relation) {
    fail(nullptr,
         "relation OID " + std::to_string(oid) + " was never announced by a Relation message");
  }
  return relation;
}

void ChangeStream::Feed::require_transaction(const Relation* relation) const {
  if (!stream_.in_transaction_) {
    fail(relation, "change outside a transaction (no Begin before it)");
  }
}

void ChangeStream::Feed::check_columns(const Relation& relation, const Row& row,
                                       const char* which) const {
  if (row.size() != relation.columns.size()) {
    fail(&relation, std::string(which) + " tuple has " + std::to_string(row.size()) +
                        " columns, relation has " + std::to_string(relation.columns.size()));
  }
}

Change ChangeStream::Feed::make_change(Op op, std::shared_ptr<const Relation> relation) const {
  Change change;
  change.op = op;
  change.relation = std::move(relation);
  change.lsn = lsn_;
  change.xid = stream_.current_.xid;
  change.commit_lsn = stream_.current_.final_lsn;
  change.commit_time_us = stream_.current_.commit_time_us;
  return change;
}

void ChangeStream::Feed::on(pgoutput::Insert& m) {
  auto relation = resolve(m.relation_oid);
  require_transaction(relation.get());
  check_columns(*relation, m.new_tuple, "new");
  Change change = make_change(Op::Insert, relation);
  change.new_row = std::move(m.new_tuple);
  handler_.on_change(change);
}

void ChangeStream::Feed::on(pgoutput::Update& m) {
  auto relation = resolve(m.relation_oid);
  require_transaction(relation.get());
  if (m.old_kind != 0) check_columns(*relation, m.old_tuple, "old");
  check_columns(*relation, m.new_tuple, "new");
  Change change = make_change(Op::Update, relation);
  if (m.old_kind != 0) change.old_row = old_row(*relation, m.old_kind, std::move(m.old_tuple));
  change.new_row = std::move(m.new_tuple);
  handler_.on_change(change);
}

void ChangeStream::Feed::on(pgoutput::Delete& m) {
  auto relation = resolve(m.relation_oid);
  require_transaction(relation.get());
  check_columns(*relation, m.old_tuple, "old");
  Change change = make_change(Op::Delete, relation);
  change.old_row = old_row(*relation, m.old_kind, std::move(m.old_tuple));
  handler_.on_change(change);
}

void ChangeStream::Feed::on(pgoutput::Truncate& m) {
  // Resolve every OID first, so an unknown one fails before any change is delivered.
  std::vector<std::shared_ptr<const Relation>> truncated;
  truncated.reserve(m.relation_oids.size());
  for (const std::uint32_t oid : m.relation_oids) truncated.push_back(resolve(oid));
  require_transaction(truncated.empty() ? nullptr : truncated.front().get());
  for (auto& relation : truncated) {
    Change change = make_change(Op::Truncate, std::move(relation));
    change.truncate_options = m.options;
    handler_.on_change(change);
  }
}

void ChangeStream::Feed::on(pgoutput::Begin& m) {
  if (stream_.in_transaction_) {
    fail(nullptr, "Begin of xid " + std::to_string(m.xid) + " inside transaction " +
                      std::to_string(stream_.current_.xid) + " (no Commit before it)");
  }
  stream_.current_ = TransactionBegin{m.final_lsn, m.xid, m.commit_time_us};
  stream_.in_transaction_ = true;
  handler_.on_begin(stream_.current_);
}

void ChangeStream::Feed::on(pgoutput::Commit& m) {
  if (!stream_.in_transaction_) fail(nullptr, "Commit outside a transaction (no Begin before it)");
  stream_.in_transaction_ = false;
  handler_.on_commit(
      TransactionCommit{m.commit_lsn, m.end_lsn, stream_.current_.xid, m.commit_time_us});
}

void ChangeStream::Feed::on(pgoutput::RelationMessage& m) {
  const std::uint32_t oid = m.relation.oid;
  stream_.relations_.put(std::move(m.relation));
  handler_.on_relation(*stream_.relations_.find(oid));
}

void ChangeStream::feed(std::string_view data, Lsn lsn, ChangeHandler& handler) {
  Feed feed(*this, data, lsn, handler);
  pgoutput::Message message = feed.decode();
  feed.apply(message);
}

}  // namespace walbust
