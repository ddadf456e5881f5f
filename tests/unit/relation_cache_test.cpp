#include "walbust/core/relation_cache.h"

#include <gtest/gtest.h>

namespace walbust {
namespace {

Relation make(std::uint32_t oid, std::string name, std::vector<std::string> columns) {
  Relation r;
  r.oid = oid;
  r.schema = "public";
  r.name = std::move(name);
  for (auto& c : columns) r.columns.push_back(Column{std::move(c), 25, -1, false});
  return r;
}

TEST(RelationCache, FindsWhatWasPut) {
  RelationCache cache;
  EXPECT_EQ(cache.find(1), nullptr);
  cache.put(make(1, "a", {"id"}));
  cache.put(make(2, "b", {"id", "v"}));
  EXPECT_EQ(cache.size(), 2u);
  ASSERT_NE(cache.find(1), nullptr);
  EXPECT_EQ(cache.find(1)->name, "a");
  EXPECT_EQ(cache.find(2)->columns.size(), 2u);
  EXPECT_EQ(cache.find(3), nullptr);
}

TEST(RelationCache, PutReplacesByOidAndKeepsEarlierSnapshots) {
  RelationCache cache;
  cache.put(make(7, "t", {"id"}));
  const auto before = cache.find(7);
  cache.put(make(7, "t", {"id", "added"}));
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.find(7)->columns.size(), 2u);
  // A change decoded with the old schema still sees it.
  ASSERT_NE(before, nullptr);
  EXPECT_EQ(before->columns.size(), 1u);
}

TEST(RelationCache, Clear) {
  RelationCache cache;
  cache.put(make(1, "a", {}));
  cache.clear();
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.find(1), nullptr);
}

TEST(Relation, ColumnIndexAndQualifiedName) {
  const Relation r = make(1, "blog_post", {"id", "title", "id2"});
  EXPECT_EQ(r.column_index("id"), 0);
  EXPECT_EQ(r.column_index("id2"), 2);
  EXPECT_EQ(r.column_index("ID"), -1);  // names are exact, as PostgreSQL sends them
  EXPECT_EQ(r.column_index(""), -1);
  EXPECT_EQ(r.qualified_name(), "public.blog_post");
}

TEST(OpName, NamesEveryOp) {
  EXPECT_EQ(op_name(Op::Insert), "insert");
  EXPECT_EQ(op_name(Op::Update), "update");
  EXPECT_EQ(op_name(Op::Delete), "delete");
  EXPECT_EQ(op_name(Op::Truncate), "truncate");
}

}  // namespace
}  // namespace walbust
