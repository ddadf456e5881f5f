#pragma once
// Decoder for PostgreSQL's pgoutput logical replication messages (proto_version 1, text
// values). Decodes one message into a value; never trusts a length from the wire.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "walbust/core/change.h"
#include "walbust/core/lsn.h"

namespace walbust::pgoutput {

// A malformed, truncated or unknown message. what() names the LSN and the message type,
// e.g. "pgoutput message 'U' (update) at 0/1A2B3C8: truncated: need 4 bytes at offset 9 of 11".
class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Begin {
  Lsn final_lsn = 0;  // LSN of the commit record
  std::int64_t commit_time_us = 0;
  std::uint32_t xid = 0;
};
struct Commit {
  std::uint8_t flags = 0;
  Lsn commit_lsn = 0;
  Lsn end_lsn = 0;  // the position to acknowledge once the transaction is handled
  std::int64_t commit_time_us = 0;
};
struct Origin {
  Lsn commit_lsn = 0;
  std::string name;
};
struct RelationMessage {
  Relation relation;
};
struct TypeMessage {
  std::uint32_t oid = 0;
  std::string schema;
  std::string name;
};
// Tuples are decoded as sent: Kind::Null for 'n', Kind::Unchanged for 'u', Kind::Text for 't'.
struct Insert {
  std::uint32_t relation_oid = 0;
  Row new_tuple;
};
struct Update {
  std::uint32_t relation_oid = 0;
  char old_kind = 0;  // 0 (no old tuple), 'K' (replica identity key) or 'O' (whole old row)
  Row old_tuple;
  Row new_tuple;
};
struct Delete {
  std::uint32_t relation_oid = 0;
  char old_kind = 0;  // 'K' or 'O'
  Row old_tuple;
};
struct Truncate {
  std::uint8_t options = 0;  // bit 1 CASCADE, bit 2 RESTART IDENTITY
  std::vector<std::uint32_t> relation_oids;
};
struct LogicalMessage {  // pg_logical_emit_message; walbust ignores it
  bool transactional = false;
  Lsn lsn = 0;
  std::string prefix;
  std::string content;
};

using Message = std::variant<Begin, Commit, Origin, RelationMessage, TypeMessage, Insert, Update,
                             Delete, Truncate, LogicalMessage>;

// Decodes one message (the payload of an XLogData frame). `lsn` is the frame's position,
// used only for error messages. Throws DecodeError.
[[nodiscard]] Message decode(std::string_view data, Lsn lsn);

// "begin", "commit", "relation", ... for a message type byte; "unknown" otherwise.
[[nodiscard]] std::string_view message_type_name(char type);

// The context that starts every error about a message, e.g. "pgoutput message 'U' (update)
// at 0/1A2B3C8" (only its type byte is read), so callers can report in the same words.
[[nodiscard]] std::string describe_message(std::string_view data, Lsn lsn);

}  // namespace walbust::pgoutput
