#pragma once
// Builds pgoutput (proto_version 1) messages byte by byte for tests, in the layout of
// PostgreSQL's src/backend/replication/logical/proto.c.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace walbust::testing {

// One tuple column as sent: kind 'n', 'u', 't' (with text) or anything else for error tests.
struct WireValue {
  char kind = 'n';
  std::string text;
};
inline WireValue text(std::string value) { return {'t', std::move(value)}; }
inline WireValue null() { return {'n', {}}; }
inline WireValue unchanged() { return {'u', {}}; }

struct WireColumn {
  std::uint8_t flags = 0;  // 1: part of the replica identity
  std::string name;
  std::uint32_t type_oid = 25;
  std::int32_t type_modifier = -1;
};

class MessageBuilder {
 public:
  explicit MessageBuilder(char type) { data_.push_back(type); }

  MessageBuilder& u8(std::uint8_t v) {
    data_.push_back(static_cast<char>(v));
    return *this;
  }
  MessageBuilder& i16(std::int16_t v) { return be(static_cast<std::uint16_t>(v), 2); }
  MessageBuilder& u32(std::uint32_t v) { return be(v, 4); }
  MessageBuilder& i32(std::int32_t v) { return be(static_cast<std::uint32_t>(v), 4); }
  MessageBuilder& u64(std::uint64_t v) { return be(v, 8); }
  MessageBuilder& i64(std::int64_t v) { return be(static_cast<std::uint64_t>(v), 8); }
  MessageBuilder& cstring(std::string_view s) {
    data_.append(s);
    data_.push_back('\0');
    return *this;
  }
  MessageBuilder& bytes(std::string_view s) {
    data_.append(s);
    return *this;
  }
  MessageBuilder& tuple(const std::vector<WireValue>& values) {
    i16(static_cast<std::int16_t>(values.size()));
    for (const auto& v : values) {
      u8(static_cast<std::uint8_t>(v.kind));
      if (v.kind == 't' || v.kind == 'b') {
        i32(static_cast<std::int32_t>(v.text.size()));
        bytes(v.text);
      }
    }
    return *this;
  }
  MessageBuilder& columns(const std::vector<WireColumn>& cols) {
    i16(static_cast<std::int16_t>(cols.size()));
    for (const auto& c : cols) u8(c.flags).cstring(c.name).u32(c.type_oid).i32(c.type_modifier);
    return *this;
  }
  [[nodiscard]] const std::string& str() const { return data_; }
  // Implicit on purpose: a built message passes straight to decode() or into a std::string.
  operator std::string() const { return data_; }        // NOLINT
  operator std::string_view() const& { return data_; }  // NOLINT

 private:
  MessageBuilder& be(std::uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) data_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
    return *this;
  }
  std::string data_;
};

// Whole messages with the usual fields.
inline std::string begin_msg(std::uint64_t final_lsn, std::int64_t time_us, std::uint32_t xid) {
  return MessageBuilder('B').u64(final_lsn).i64(time_us).u32(xid);
}
inline std::string commit_msg(std::uint64_t commit_lsn, std::uint64_t end_lsn,
                              std::int64_t time_us) {
  return MessageBuilder('C').u8(0).u64(commit_lsn).u64(end_lsn).i64(time_us);
}
inline std::string relation_msg(std::uint32_t oid, std::string_view schema, std::string_view name,
                                char identity, const std::vector<WireColumn>& cols) {
  return MessageBuilder('R')
      .u32(oid)
      .cstring(schema)
      .cstring(name)
      .u8(static_cast<std::uint8_t>(identity))
      .columns(cols);
}
inline std::string insert_msg(std::uint32_t oid, const std::vector<WireValue>& row) {
  return MessageBuilder('I').u32(oid).u8('N').tuple(row);
}
// old_kind 0: no old tuple.
inline std::string update_msg(std::uint32_t oid, char old_kind, const std::vector<WireValue>& old,
                              const std::vector<WireValue>& row) {
  MessageBuilder b('U');
  b.u32(oid);
  if (old_kind != 0) b.u8(static_cast<std::uint8_t>(old_kind)).tuple(old);
  return b.u8('N').tuple(row);
}
inline std::string delete_msg(std::uint32_t oid, char old_kind, const std::vector<WireValue>& old) {
  return MessageBuilder('D').u32(oid).u8(static_cast<std::uint8_t>(old_kind)).tuple(old);
}
inline std::string truncate_msg(std::uint8_t options, const std::vector<std::uint32_t>& oids) {
  MessageBuilder b('T');
  b.i32(static_cast<std::int32_t>(oids.size())).u8(options);
  for (auto oid : oids) b.u32(oid);
  return b;
}

}  // namespace walbust::testing
