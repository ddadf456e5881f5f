#pragma once
// The decoded, relation-resolved form of one row change: what rules match against.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "walbust/core/lsn.h"

namespace walbust {

enum class Op : std::uint8_t { Insert, Update, Delete, Truncate };
[[nodiscard]] std::string_view op_name(Op op);  // "insert", "update", "delete", "truncate"
[[nodiscard]] std::optional<Op> parse_op(std::string_view name);  // the inverse of op_name

// One column value of a row image.
struct Value {
  enum class Kind : std::uint8_t {
    Null,       // SQL NULL ('n' in a full tuple)
    Unchanged,  // unchanged TOASTed value that PostgreSQL did not send ('u')
    Text,       // PostgreSQL's text output of the value ('t')
    Absent,     // not sent: a non-key column of a 'K' (replica identity key) old tuple
  };
  Kind kind = Kind::Absent;
  std::string text;  // only meaningful for Kind::Text

  [[nodiscard]] bool has_text() const { return kind == Kind::Text; }
  friend bool operator==(const Value&, const Value&) = default;
};

struct Column {
  std::string name;
  std::uint32_t type_oid = 0;
  std::int32_t type_modifier = -1;
  bool is_key = false;  // part of the replica identity (flag bit 1 in the Relation message)
};

struct Relation {
  std::uint32_t oid = 0;
  // pgoutput sends an empty namespace for pg_catalog (logicalrep_write_namespace); the
  // decoder fills in "pg_catalog", so this is never empty.
  std::string schema;
  std::string name;
  char replica_identity = 'd';  // 'd' default, 'n' nothing, 'f' full, 'i' index
  std::vector<Column> columns;

  [[nodiscard]] std::string qualified_name() const { return schema + "." + name; }
  // Index of a column by name, or -1.
  [[nodiscard]] int column_index(std::string_view column) const;
};

using Row = std::vector<Value>;  // aligned with Relation::columns

struct Change {
  Op op = Op::Insert;
  std::shared_ptr<const Relation> relation;
  // Previous row image: full with REPLICA IDENTITY FULL ('O'), key columns only with a
  // 'K' tuple (other columns Absent), missing when PostgreSQL sent none.
  std::optional<Row> old_row;
  std::optional<Row> new_row;  // insert and update
  Lsn lsn = kInvalidLsn;       // the XLogData position the change arrived at
  std::uint32_t xid = 0;
  Lsn commit_lsn = kInvalidLsn;       // Begin's final LSN: the commit record's LSN
  std::int64_t commit_time_us = 0;    // microseconds since 2000-01-01 00:00:00 UTC
  std::uint8_t truncate_options = 0;  // bit 1 CASCADE, bit 2 RESTART IDENTITY
};

}  // namespace walbust
