#pragma once
// Bounds-checked reading of network-byte-order values from a wire message. Every read checks
// the remaining size first; lengths taken from the wire are never trusted.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace walbust {

// A read past the end, a string without its NUL, or a negative length. what() says what was
// needed, at which offset, of what size, e.g. "truncated: need 4 bytes at offset 9 of 11".
class ByteReadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ByteReader {
 public:
  explicit ByteReader(std::string_view data) : data_(data) {}
  explicit ByteReader(const char* data) : data_(data) {}
  // The reader keeps a view: a temporary string would be gone before the first read.
  explicit ByteReader(std::string&&) = delete;

  [[nodiscard]] std::uint8_t read_u8();
  [[nodiscard]] std::int16_t read_i16();
  [[nodiscard]] std::uint16_t read_u16();
  [[nodiscard]] std::int32_t read_i32();
  [[nodiscard]] std::uint32_t read_u32();
  [[nodiscard]] std::int64_t read_i64();
  [[nodiscard]] std::uint64_t read_u64();
  // A NUL-terminated string, returned without its NUL.
  [[nodiscard]] std::string_view read_cstring();
  // The next n bytes; a view into the underlying data.
  [[nodiscard]] std::string_view read_bytes(std::size_t n);
  // An int32 length followed by that many bytes; a negative length is an error.
  [[nodiscard]] std::string_view read_counted_bytes();

  [[nodiscard]] std::size_t remaining() const { return data_.size() - offset_; }
  [[nodiscard]] std::size_t offset() const { return offset_; }
  [[nodiscard]] std::size_t size() const { return data_.size(); }
  [[nodiscard]] bool at_end() const { return offset_ == data_.size(); }

 private:
  // Checks that n bytes remain and returns a pointer to them, advancing past them.
  const unsigned char* take(std::size_t n);
  template <typename T>
  T read_unsigned();

  std::string_view data_;
  std::size_t offset_ = 0;
};

}  // namespace walbust
