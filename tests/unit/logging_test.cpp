#include "walbust/io/logging.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace walbust {
namespace {

// True when `s` has the shape of `pattern`, where '9' stands for any digit.
bool has_shape(std::string_view s, std::string_view pattern) {
  if (s.size() != pattern.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool ok = pattern[i] == '9' ? (s[i] >= '0' && s[i] <= '9') : s[i] == pattern[i];
    if (!ok) return false;
  }
  return true;
}

class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override { unsetenv("JOURNAL_STREAM"); }
  void TearDown() override {
    unsetenv("JOURNAL_STREAM");
    spdlog::set_default_logger(nullptr);  // the stream dies with the test
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("walbust"));
  }
  std::ostringstream out_;
};

TEST_F(LoggingTest, ValidatesLevelsAndFormats) {
  for (const char* l : {"trace", "debug", "info", "warn", "error"})
    EXPECT_TRUE(is_valid_log_level(l));
  for (const char* l : {"", "warning", "INFO", "critical", "off"})
    EXPECT_FALSE(is_valid_log_level(l));
  for (const char* f : {"auto", "text", "json"}) EXPECT_TRUE(is_valid_log_format(f));
  for (const char* f : {"", "journal", "JSON", "plain"}) EXPECT_FALSE(is_valid_log_format(f));
  EXPECT_THROW(setup_logging({"verbose", "text"}, out_), std::invalid_argument);
  EXPECT_THROW(setup_logging({"info", "xml"}, out_), std::invalid_argument);
}

TEST_F(LoggingTest, TextFormatHasTimestampLevelAndMessage) {
  setup_logging({"info", "text"}, out_);
  spdlog::info("slot {} streaming from {}", "walbust", "0/16B3748");
  spdlog::debug("hidden at info");
  EXPECT_TRUE(
      has_shape(out_.str(), "9999-99-99 99:99:99.999 info slot walbust streaming from 0/16B3748\n"))
      << out_.str();
}

TEST_F(LoggingTest, AutoIsTextOutsideSystemd) {
  EXPECT_EQ(resolve_log_style("auto"), LogStyle::text);
  setup_logging({"info", "auto"}, out_);
  spdlog::info("hello");
  EXPECT_EQ(out_.str().find('<'), std::string::npos) << out_.str();
}

TEST_F(LoggingTest, AutoIsJournalUnderSystemd) {
  setenv("JOURNAL_STREAM", "8:12345", 1);
  EXPECT_EQ(resolve_log_style("auto"), LogStyle::journal);
  EXPECT_EQ(resolve_log_style("text"), LogStyle::text);
  setup_logging({"trace", "auto"}, out_);
  spdlog::trace("t");
  spdlog::debug("d");
  spdlog::info("i");
  spdlog::warn("w");
  spdlog::error("e");
  spdlog::critical("c");
  spdlog::info("two\nlines");
  EXPECT_EQ(out_.str(), "<7>t\n<7>d\n<6>i\n<4>w\n<3>e\n<2>c\n<6>two\n<6>lines\n");
}

TEST_F(LoggingTest, LevelFilters) {
  setenv("JOURNAL_STREAM", "8:1", 1);
  setup_logging({"warn", "auto"}, out_);
  spdlog::info("no");
  spdlog::warn("yes");
  EXPECT_EQ(out_.str(), "<4>yes\n");
}

TEST_F(LoggingTest, JsonFormatIsOneEscapedObjectPerLine) {
  setup_logging({"debug", "json"}, out_);
  spdlog::warn("key \"a\\b\"\nnext\ttab");
  spdlog::debug("second");
  spdlog::info(std::string("bad utf8 \xff\xfe end"));
  std::istringstream lines(out_.str());
  std::string line;
  std::vector<nlohmann::json> objects;
  while (std::getline(lines, line)) objects.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(objects.size(), 3u) << out_.str();
  EXPECT_EQ(objects[0]["level"], "warn");
  EXPECT_EQ(objects[0]["msg"], "key \"a\\b\"\nnext\ttab");
  EXPECT_TRUE(has_shape(objects[0]["ts"].get<std::string>(), "9999-99-99T99:99:99.999Z"))
      << objects[0]["ts"];
  EXPECT_EQ(objects[1]["level"], "debug");
  EXPECT_EQ(objects[1]["msg"], "second");
  EXPECT_EQ(objects[2]["level"], "info");
  EXPECT_TRUE(out_.str().starts_with("{\"ts\":\"")) << out_.str();
}

TEST_F(LoggingTest, CanBeCalledAgainToChangeFormat) {
  setup_logging({"info", "json"}, out_);
  std::ostringstream second;
  setup_logging({"error", "text"}, second);
  spdlog::info("dropped");
  spdlog::error("kept");
  EXPECT_EQ(out_.str(), "");
  EXPECT_NE(second.str().find(" error kept\n"), std::string::npos) << second.str();
}

TEST_F(LoggingTest, StderrSetupWorks) {
  EXPECT_NO_THROW(setup_logging({"info", "auto"}));
  EXPECT_NE(spdlog::default_logger(), nullptr);
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::info);
}

struct RedactCase {
  const char* in;
  const char* out;
};

TEST(RedactConninfo, RemovesPasswords) {
  const RedactCase cases[] = {
      {"host=db user=app password=secret dbname=x", "host=db user=app password=*** dbname=x"},
      {"password=secret", "password=***"},
      {"password = secret host=db", "password = *** host=db"},
      {"host=db password='se cr\\'et' port=5432", "host=db password=*** port=5432"},
      {"host=db password='secret unterminated", "host=db password=***"},
      {"password=sec\\ ret host=db", "password=*** host=db"},
      {"host=db sslpassword=secret", "host=db sslpassword=***"},
      {"host=db PASSWORD=secret", "host=db PASSWORD=***"},
      {"host=db\tpassword=secret\nuser=u", "host=db\tpassword=***\nuser=u"},
      {"postgresql://user:secret@host:5432/db", "postgresql://user:***@host:5432/db"},
      {"postgres://user:secret@h1:5432,h2:5433/db?sslmode=require",
       "postgres://user:***@h1:5432,h2:5433/db?sslmode=require"},
      {"postgresql://user@host/db?sslmode=require&password=secret&application_name=w",
       "postgresql://user@host/db?sslmode=require&password=***&application_name=w"},
      {"postgresql:///db?host=/run/postgresql&password=secret",
       "postgresql:///db?host=/run/postgresql&password=***"},
      {"postgresql://us:se@cr/et@host/db", "postgresql://us:***@host/db"},
      {"redis://:secret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"},
      {"redis://default:secret@cache:6379/2", "redis://default:***@cache:6379/2"},
      {"rediss://u:secret@cache", "rediss://u:***@cache"},
      {"unix:///run/redis.sock?db=1&password=secret", "unix:///run/redis.sock?db=1&password=***"},
  };
  for (const auto& c : cases) {
    const std::string got = redact_conninfo(c.in);
    EXPECT_EQ(got, c.out) << c.in;
    EXPECT_EQ(got.find("secret"), std::string::npos) << c.in;
  }
}

TEST(RedactConninfo, LeavesStringsWithoutPasswordsAlone) {
  for (const char* s :
       {"", "host=db user=app dbname=x", "host='a b' user=app", "postgresql://user@host/db",
        "postgresql://host:5432/db?sslmode=require", "redis://127.0.0.1:6379/0",
        "redis://user@cache/0", "unix:///run/redis.sock?db=1", "passwordless=yes"}) {
    EXPECT_EQ(redact_conninfo(s), s);
  }
}

}  // namespace
}  // namespace walbust
