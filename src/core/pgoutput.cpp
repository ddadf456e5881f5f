#include "walbust/core/pgoutput.h"

#include <algorithm>
#include <cstdio>

#include "walbust/core/byte_reader.h"

namespace walbust::pgoutput {
namespace {

// A well-sized but ill-formed message (bad kind byte, negative count, trailing bytes).
// decode() prefixes it, like a ByteReadError, with the message type and LSN.
class Malformed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// 'U' for printable bytes, 0x05 otherwise: error text must stay readable on a terminal.
std::string quote_byte(std::uint8_t byte) {
  if (byte >= 0x20 && byte < 0x7f) return std::string{'\'', static_cast<char>(byte), '\''};
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", static_cast<unsigned>(byte));
  return buf;
}

// " at offset 9 of 11": where in the message a problem starts.
std::string where(const ByteReader& r, std::size_t offset) {
  return " at offset " + std::to_string(offset) + " of " + std::to_string(r.size());
}

// pgoutput writes an empty namespace for pg_catalog (logicalrep_write_namespace).
std::string namespace_name(std::string_view wire) {
  return wire.empty() ? std::string("pg_catalog") : std::string(wire);
}

Row read_tuple(ByteReader& r) {
  const std::size_t count_at = r.offset();
  const std::int16_t count = r.read_i16();
  if (count < 0) {
    throw Malformed("negative column count " + std::to_string(count) + where(r, count_at));
  }
  Row row;
  // Every column takes at least one byte, so the remaining size bounds the reservation.
  row.reserve(std::min<std::size_t>(static_cast<std::size_t>(count), r.remaining()));
  for (int i = 0; i < count; ++i) {
    const std::uint8_t kind = r.read_u8();
    switch (kind) {
      case 'n':
        row.push_back(Value{Value::Kind::Null, {}});
        break;
      case 'u':
        row.push_back(Value{Value::Kind::Unchanged, {}});
        break;
      case 't':
        row.push_back(Value{Value::Kind::Text, std::string(r.read_counted_bytes())});
        break;
      default:
        // 'b' (binary) only appears when the binary option is requested, which walbust never does.
        throw Malformed("column " + std::to_string(i + 1) + " of " + std::to_string(count) +
                        ": unsupported value kind " + quote_byte(kind) + where(r, r.offset() - 1));
    }
  }
  return row;
}

// 'K' or 'O' before an old tuple; anything else is an error naming what was expected.
char read_old_kind(ByteReader& r, std::uint8_t kind) {
  if (kind != 'K' && kind != 'O') {
    throw Malformed("expected 'K' or 'O' old tuple, got " + quote_byte(kind) +
                    where(r, r.offset() - 1));
  }
  return static_cast<char>(kind);
}

void expect_new_tuple(ByteReader& r, std::uint8_t kind) {
  if (kind != 'N') {
    throw Malformed("expected 'N' new tuple, got " + quote_byte(kind) + where(r, r.offset() - 1));
  }
}

Relation read_relation(ByteReader& r) {
  Relation rel;
  rel.oid = r.read_u32();
  rel.schema = namespace_name(r.read_cstring());
  rel.name = std::string(r.read_cstring());
  const std::uint8_t identity = r.read_u8();
  if (identity != 'd' && identity != 'n' && identity != 'f' && identity != 'i') {
    throw Malformed("unknown replica identity " + quote_byte(identity) + where(r, r.offset() - 1));
  }
  rel.replica_identity = static_cast<char>(identity);
  const std::size_t count_at = r.offset();
  const std::int16_t count = r.read_i16();
  if (count < 0) {
    throw Malformed("negative column count " + std::to_string(count) + where(r, count_at));
  }
  // A column takes at least 10 bytes (flags, NUL, type OID, type modifier).
  rel.columns.reserve(std::min<std::size_t>(static_cast<std::size_t>(count), r.remaining() / 10));
  for (int i = 0; i < count; ++i) {
    Column col;
    const std::uint8_t flags = r.read_u8();
    col.is_key = (flags & 1) != 0;  // LOGICALREP_IS_REPLICA_IDENTITY
    col.name = std::string(r.read_cstring());
    col.type_oid = r.read_u32();
    col.type_modifier = r.read_i32();
    rel.columns.push_back(std::move(col));
  }
  return rel;
}

Begin read_begin(ByteReader& r) {
  Begin m;
  m.final_lsn = r.read_u64();
  m.commit_time_us = r.read_i64();
  m.xid = r.read_u32();
  return m;
}

Commit read_commit(ByteReader& r) {
  Commit m;
  m.flags = r.read_u8();
  m.commit_lsn = r.read_u64();
  m.end_lsn = r.read_u64();
  m.commit_time_us = r.read_i64();
  return m;
}

Origin read_origin(ByteReader& r) {
  Origin m;
  m.commit_lsn = r.read_u64();
  m.name = std::string(r.read_cstring());
  return m;
}

TypeMessage read_type_message(ByteReader& r) {
  TypeMessage m;
  m.oid = r.read_u32();
  m.schema = namespace_name(r.read_cstring());
  m.name = std::string(r.read_cstring());
  return m;
}

Insert read_insert(ByteReader& r) {
  Insert m;
  m.relation_oid = r.read_u32();
  expect_new_tuple(r, r.read_u8());
  m.new_tuple = read_tuple(r);
  return m;
}

Update read_update(ByteReader& r) {
  Update m;
  m.relation_oid = r.read_u32();
  std::uint8_t kind = r.read_u8();
  if (kind == 'K' || kind == 'O') {
    m.old_kind = static_cast<char>(kind);
    m.old_tuple = read_tuple(r);
    kind = r.read_u8();
  }
  expect_new_tuple(r, kind);
  m.new_tuple = read_tuple(r);
  return m;
}

Delete read_delete(ByteReader& r) {
  Delete m;
  m.relation_oid = r.read_u32();
  m.old_kind = read_old_kind(r, r.read_u8());
  m.old_tuple = read_tuple(r);
  return m;
}

Truncate read_truncate(ByteReader& r) {
  Truncate m;
  const std::size_t count_at = r.offset();
  const std::int32_t count = r.read_i32();
  if (count < 0) {
    throw Malformed("negative relation count " + std::to_string(count) + where(r, count_at));
  }
  m.options = r.read_u8();
  m.relation_oids.reserve(
      std::min<std::size_t>(static_cast<std::size_t>(count), r.remaining() / 4));
  for (std::int32_t i = 0; i < count; ++i) m.relation_oids.push_back(r.read_u32());
  return m;
}

LogicalMessage read_logical_message(ByteReader& r) {
  LogicalMessage m;
  m.transactional = (r.read_u8() & 1) != 0;  // MESSAGE_TRANSACTIONAL
  m.lsn = r.read_u64();
  m.prefix = std::string(r.read_cstring());
  m.content = std::string(r.read_counted_bytes());
  return m;
}

Message decode_body(std::uint8_t type, ByteReader& r) {
  switch (type) {
    case 'B':
      return read_begin(r);
    case 'C':
      return read_commit(r);
    case 'O':
      return read_origin(r);
    case 'R':
      return RelationMessage{read_relation(r)};
    case 'Y':
      return read_type_message(r);
    case 'I':
      return read_insert(r);
    case 'U':
      return read_update(r);
    case 'D':
      return read_delete(r);
    case 'T':
      return read_truncate(r);
    case 'M':
      return read_logical_message(r);
    case 'S':
    case 'E':
    case 'c':
    case 'A':
    case 'p':
    case 'b':
    case 'P':
    case 'K':
    case 'r':
      throw Malformed("unsupported message type " + quote_byte(type) +
                      " (streaming and two-phase messages are not part of proto_version 1)");
    default:
      throw Malformed("unknown message type " + quote_byte(type));
  }
}

}  // namespace

std::string_view message_type_name(char type) {
  switch (type) {
    case 'B':
      return "begin";
    case 'C':
      return "commit";
    case 'O':
      return "origin";
    case 'R':
      return "relation";
    case 'Y':
      return "type";
    case 'I':
      return "insert";
    case 'U':
      return "update";
    case 'D':
      return "delete";
    case 'T':
      return "truncate";
    case 'M':
      return "message";
    default:
      return "unknown";
  }
}

std::string describe_message(std::string_view data, Lsn lsn) {
  if (data.empty()) return "pgoutput message at " + format_lsn(lsn);
  const auto type = static_cast<std::uint8_t>(data.front());
  return "pgoutput message " + quote_byte(type) + " (" +
         std::string(message_type_name(static_cast<char>(type))) + ") at " + format_lsn(lsn);
}

Message decode(std::string_view data, Lsn lsn) {
  if (data.empty()) throw DecodeError(describe_message(data, lsn) + ": empty message");
  const auto type = static_cast<std::uint8_t>(data.front());
  ByteReader r(data);
  try {
    (void)r.read_u8();
    Message message = decode_body(type, r);
    if (!r.at_end()) {
      throw Malformed(std::to_string(r.remaining()) + " trailing bytes" + where(r, r.offset()));
    }
    return message;
  } catch (const ByteReadError& e) {
    throw DecodeError(describe_message(data, lsn) + ": " + e.what());
  } catch (const Malformed& e) {
    throw DecodeError(describe_message(data, lsn) + ": " + e.what());
  }
}

}  // namespace walbust::pgoutput
