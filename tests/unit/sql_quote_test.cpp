#include "walbust/core/sql_quote.h"

#include <gtest/gtest.h>

namespace walbust {
namespace {

TEST(SqlQuote, Identifiers) {
  EXPECT_EQ(sql_identifier("blog_post"), "\"blog_post\"");
  EXPECT_EQ(sql_identifier("Blog Post"), "\"Blog Post\"");
  EXPECT_EQ(sql_identifier("a\"b"), "\"a\"\"b\"");
  EXPECT_EQ(sql_identifier(""), "\"\"");
  EXPECT_EQ(sql_qualified("public", "blog_post"), "\"public\".\"blog_post\"");
}

TEST(SqlQuote, Literals) {
  EXPECT_EQ(sql_literal("walbust"), "'walbust'");
  EXPECT_EQ(sql_literal("it's"), "'it''s'");
  EXPECT_EQ(sql_literal(""), "''");
  // Backslashes switch to E'' so the meaning does not depend on standard_conforming_strings.
  EXPECT_EQ(sql_literal("a\\b'c"), "E'a\\\\b''c'");
}

TEST(SqlQuote, DollarQuotingPicksATagNotInTheBody) {
  EXPECT_EQ(sql_dollar_quoted("BEGIN\nEND"), "$walbust$\nBEGIN\nEND\n$walbust$");
  EXPECT_EQ(sql_dollar_quoted("SELECT '$walbust$'\n"),
            "$walbust1$\nSELECT '$walbust$'\n$walbust1$");
  EXPECT_EQ(sql_dollar_quoted("$walbust$ $walbust1$"),
            "$walbust2$\n$walbust$ $walbust1$\n$walbust2$");
}

}  // namespace
}  // namespace walbust
