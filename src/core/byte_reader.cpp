#include "walbust/core/byte_reader.h"

#include <cstring>
#include <string>

namespace walbust {

const unsigned char* ByteReader::take(std::size_t n) {
  if (n > remaining()) {
    throw ByteReadError("truncated: need " + std::to_string(n) + " bytes at offset " +
                        std::to_string(offset_) + " of " + std::to_string(data_.size()));
  }
  const auto* p = reinterpret_cast<const unsigned char*>(data_.data()) + offset_;
  offset_ += n;
  return p;
}

template <typename T>
T ByteReader::read_unsigned() {
  const unsigned char* p = take(sizeof(T));
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) value = static_cast<T>((value << 8) | p[i]);
  return value;
}

std::uint8_t ByteReader::read_u8() { return *take(1); }
std::uint16_t ByteReader::read_u16() { return read_unsigned<std::uint16_t>(); }
std::uint32_t ByteReader::read_u32() { return read_unsigned<std::uint32_t>(); }
std::uint64_t ByteReader::read_u64() { return read_unsigned<std::uint64_t>(); }
// Two's complement conversion is well defined since C++20.
std::int16_t ByteReader::read_i16() { return static_cast<std::int16_t>(read_u16()); }
std::int32_t ByteReader::read_i32() { return static_cast<std::int32_t>(read_u32()); }
std::int64_t ByteReader::read_i64() { return static_cast<std::int64_t>(read_u64()); }

std::string_view ByteReader::read_cstring() {
  const std::string_view rest = data_.substr(offset_);
  const auto nul = rest.find('\0');
  if (nul == std::string_view::npos) {
    throw ByteReadError("truncated: no NUL terminator for string at offset " +
                        std::to_string(offset_) + " of " + std::to_string(data_.size()));
  }
  offset_ += nul + 1;
  return rest.substr(0, nul);
}

std::string_view ByteReader::read_bytes(std::size_t n) {
  const auto* p = take(n);
  return {reinterpret_cast<const char*>(p), n};
}

std::string_view ByteReader::read_counted_bytes() {
  // All or nothing, like every other read: a failure leaves the offset where it was.
  const std::size_t at = offset_;
  const std::int32_t length = read_i32();
  if (length < 0) {
    offset_ = at;
    throw ByteReadError("negative length " + std::to_string(length) + " at offset " +
                        std::to_string(at) + " of " + std::to_string(data_.size()));
  }
  try {
    return read_bytes(static_cast<std::size_t>(length));
  } catch (const ByteReadError&) {
    offset_ = at;
    throw;
  }
}

}  // namespace walbust
