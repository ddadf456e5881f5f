#include "walbust/core/byte_reader.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace walbust {
namespace {

using namespace std::string_literals;

TEST(ByteReader, ReadsNetworkByteOrder) {
  const std::string data =
      "\x01"s                               // u8
      "\xFF\xFE"s                           // i16 -2
      "\xAB\xCD"s                           // u16
      "\xFF\xFF\xFF\xFB"s                   // i32 -5
      "\xDE\xAD\xBE\xEF"s                   // u32
      "\x80\x00\x00\x00\x00\x00\x00\x00"s   // i64 min
      "\x01\x02\x03\x04\x05\x06\x07\x08"s;  // u64
  ByteReader r(data);
  EXPECT_EQ(r.read_u8(), 1);
  EXPECT_EQ(r.read_i16(), -2);
  EXPECT_EQ(r.read_u16(), 0xABCD);
  EXPECT_EQ(r.read_i32(), -5);
  EXPECT_EQ(r.read_u32(), 0xDEADBEEFu);
  EXPECT_EQ(r.read_i64(), INT64_MIN);
  EXPECT_EQ(r.read_u64(), 0x0102030405060708u);
  EXPECT_TRUE(r.at_end());
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_EQ(r.offset(), data.size());
}

TEST(ByteReader, ReadsCStringsAndBytes) {
  const std::string data = "public\0\0ab\x00\x00\x00\x03xyzq"s;
  ByteReader r(data);
  EXPECT_EQ(r.read_cstring(), "public");
  EXPECT_EQ(r.offset(), 7u);
  EXPECT_EQ(r.read_cstring(), "");
  EXPECT_EQ(r.read_bytes(2), "ab");
  EXPECT_EQ(r.read_counted_bytes(), "xyz");
  EXPECT_EQ(r.remaining(), 1u);
  EXPECT_EQ(r.read_bytes(0), "");
  EXPECT_EQ(r.read_bytes(1), "q");
  EXPECT_TRUE(r.at_end());
}

TEST(ByteReader, EmptyInput) {
  ByteReader r("");
  EXPECT_TRUE(r.at_end());
  EXPECT_EQ(r.read_bytes(0), "");
  EXPECT_THROW((void)r.read_u8(), ByteReadError);
  EXPECT_THROW((void)r.read_cstring(), ByteReadError);
}

struct ReadCase {
  const char* name;
  std::size_t size;
  std::function<void(ByteReader&)> read;
};

// Every read fails, without consuming anything, on every input one byte too short or shorter.
TEST(ByteReader, TruncationAtEveryOffset) {
  const std::vector<ReadCase> cases = {
      {"u8", 1, [](ByteReader& r) { (void)r.read_u8(); }},
      {"i16", 2, [](ByteReader& r) { (void)r.read_i16(); }},
      {"u16", 2, [](ByteReader& r) { (void)r.read_u16(); }},
      {"i32", 4, [](ByteReader& r) { (void)r.read_i32(); }},
      {"u32", 4, [](ByteReader& r) { (void)r.read_u32(); }},
      {"i64", 8, [](ByteReader& r) { (void)r.read_i64(); }},
      {"u64", 8, [](ByteReader& r) { (void)r.read_u64(); }},
      {"bytes(5)", 5, [](ByteReader& r) { (void)r.read_bytes(5); }},
      {"counted", 7, [](ByteReader& r) { (void)r.read_counted_bytes(); }},
  };
  const std::string full = "\x00\x00\x00\x03\x61\x62\x63\x00\x00"s;
  for (const auto& c : cases) {
    for (std::size_t skip = 0; skip <= 2; ++skip) {
      for (std::size_t len = 0; len < c.size; ++len) {
        const std::string data = std::string(skip, 'x') + full.substr(0, len);
        ByteReader r(data);
        (void)r.read_bytes(skip);
        EXPECT_THROW(c.read(r), ByteReadError) << c.name << " len " << len;
        EXPECT_EQ(r.offset(), skip) << c.name << " consumed bytes on failure";
      }
      const std::string data = std::string(skip, 'x') + full.substr(0, c.size);
      ByteReader r(data);
      (void)r.read_bytes(skip);
      EXPECT_NO_THROW(c.read(r)) << c.name;
      EXPECT_TRUE(r.at_end()) << c.name;
    }
  }
}

TEST(ByteReader, ErrorSaysWhatWhereAndOfWhatSize) {
  const std::string data = "0123456789a";  // 11 bytes
  ByteReader r(data);
  (void)r.read_bytes(9);
  try {
    (void)r.read_u32();
    FAIL() << "no exception";
  } catch (const ByteReadError& e) {
    EXPECT_STREQ(e.what(), "truncated: need 4 bytes at offset 9 of 11");
  }
}

TEST(ByteReader, CStringWithoutNulFails) {
  const std::string data = "ab\0cd"s;
  ByteReader r(data);
  EXPECT_EQ(r.read_cstring(), "ab");
  try {
    (void)r.read_cstring();
    FAIL() << "no exception";
  } catch (const ByteReadError& e) {
    EXPECT_STREQ(e.what(), "truncated: no NUL terminator for string at offset 3 of 5");
  }
  EXPECT_EQ(r.offset(), 3u);
}

TEST(ByteReader, NegativeCountedLengthFails) {
  const std::string data = "\xFF\xFF\xFF\xFFxyz"s;
  ByteReader r(data);
  try {
    (void)r.read_counted_bytes();
    FAIL() << "no exception";
  } catch (const ByteReadError& e) {
    EXPECT_STREQ(e.what(), "negative length -1 at offset 0 of 7");
  }
}

TEST(ByteReader, HugeLengthsAreCheckedNotTrusted) {
  const std::string data = "\x7F\xFF\xFF\xFFxyz"s;
  ByteReader r(data);
  EXPECT_THROW((void)r.read_counted_bytes(), ByteReadError);
  ByteReader r2("abc");
  EXPECT_THROW((void)r2.read_bytes(SIZE_MAX), ByteReadError);
  EXPECT_EQ(r2.remaining(), 3u);
}

}  // namespace
}  // namespace walbust
