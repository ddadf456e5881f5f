#include "walbust/core/change_stream.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "support/captured_stream.h"
#include "support/pgoutput_builder.h"

namespace walbust {
namespace {

using namespace std::string_literals;
using walbust::testing::MessageBuilder;
using walbust::testing::null;
using walbust::testing::text;
using walbust::testing::unchanged;

Value t(std::string s) { return Value{Value::Kind::Text, std::move(s)}; }
Value n() { return Value{Value::Kind::Null, {}}; }
Value u() { return Value{Value::Kind::Unchanged, {}}; }
Value absent() { return Value{}; }

// Records every callback as a line of text plus the changes themselves.
class Recorder : public ChangeHandler {
 public:
  void on_begin(const TransactionBegin& b) override {
    events.push_back("begin xid=" + std::to_string(b.xid) + " final=" + format_lsn(b.final_lsn) +
                     " time=" + std::to_string(b.commit_time_us));
  }
  void on_change(const Change& c) override {
    events.push_back(std::string(op_name(c.op)) + " " + c.relation->qualified_name());
    changes.push_back(c);
  }
  void on_commit(const TransactionCommit& c) override {
    events.push_back("commit xid=" + std::to_string(c.xid) + " commit=" + format_lsn(c.commit_lsn) +
                     " end=" + format_lsn(c.end_lsn) + " time=" + std::to_string(c.commit_time_us));
  }
  void on_relation(const Relation& r) override {
    events.push_back("relation " + r.qualified_name() +
                     " columns=" + std::to_string(r.columns.size()));
  }
  std::vector<std::string> events;
  std::vector<Change> changes;
};

constexpr std::uint32_t kPost = 16385;
constexpr std::uint32_t kTag = 16390;

// blog_post(id key, category_id, title), default replica identity.
std::string post_relation() {
  return testing::relation_msg(
      kPost, "public", "blog_post", 'd',
      {{1, "id", 23, -1}, {0, "category_id", 23, -1}, {0, "title", 25, -1}});
}
std::string tag_relation() {
  return testing::relation_msg(kTag, "app", "tag", 'f', {{1, "id", 23, -1}, {1, "name", 25, -1}});
}

struct Fed {
  std::string data;
  Lsn lsn;
};

void feed_all(ChangeStream& stream, Recorder& rec, const std::vector<Fed>& messages) {
  for (const auto& m : messages) stream.feed(m.data, m.lsn, rec);
}

TEST(ChangeStream, FullTransaction) {
  ChangeStream stream;
  Recorder rec;
  feed_all(stream, rec,
           {
               {testing::begin_msg(0x16B3800, 777, 745), 0x16B3700},
               {post_relation(), 0x16B3700},
               {tag_relation(), 0x16B3700},
               {testing::insert_msg(kPost, {text("7"), text("3"), text("hello")}), 0x16B3710},
               {testing::update_msg(kPost, 'K', {text("7"), null(), null()},
                                    {text("8"), text("3"), text("hello")}),
                0x16B3720},
               {testing::update_msg(kTag, 'O', {text("1"), text("old")}, {text("1"), text("new")}),
                0x16B3730},
               {testing::update_msg(kPost, 0, {}, {text("8"), text("4"), unchanged()}), 0x16B3740},
               {testing::delete_msg(kPost, 'K', {text("8"), null(), null()}), 0x16B3748},
               {testing::truncate_msg(3, {kPost, kTag}), 0x16B3750},
               {testing::commit_msg(0x16B3800, 0x16B3830, 777), 0x16B3830},
           });
  EXPECT_FALSE(stream.in_transaction());
  EXPECT_EQ(rec.events, (std::vector<std::string>{
                            "begin xid=745 final=0/16B3800 time=777",
                            "relation public.blog_post columns=3",
                            "relation app.tag columns=2",
                            "insert public.blog_post",
                            "update public.blog_post",
                            "update app.tag",
                            "update public.blog_post",
                            "delete public.blog_post",
                            "truncate public.blog_post",
                            "truncate app.tag",
                            "commit xid=745 commit=0/16B3800 end=0/16B3830 time=777",
                        }));
  ASSERT_EQ(rec.changes.size(), 7u);
  for (const auto& c : rec.changes) {
    EXPECT_EQ(c.xid, 745u);
    EXPECT_EQ(c.commit_lsn, 0x16B3800u);
    EXPECT_EQ(c.commit_time_us, 777);
  }
  const Change& ins = rec.changes[0];
  EXPECT_EQ(ins.op, Op::Insert);
  EXPECT_EQ(ins.lsn, 0x16B3710u);
  EXPECT_FALSE(ins.old_row);
  EXPECT_EQ(ins.new_row, (Row{t("7"), t("3"), t("hello")}));

  // 'K': the key column keeps its value; the others were sent as 'n' but are unknown.
  const Change& upd_key = rec.changes[1];
  EXPECT_EQ(upd_key.old_row, (Row{t("7"), absent(), absent()}));
  EXPECT_EQ(upd_key.new_row, (Row{t("8"), t("3"), t("hello")}));

  const Change& upd_full = rec.changes[2];
  EXPECT_EQ(upd_full.relation->replica_identity, 'f');
  EXPECT_EQ(upd_full.old_row, (Row{t("1"), t("old")}));
  EXPECT_EQ(upd_full.new_row, (Row{t("1"), t("new")}));

  const Change& upd_none = rec.changes[3];
  EXPECT_FALSE(upd_none.old_row);
  EXPECT_EQ(upd_none.new_row, (Row{t("8"), t("4"), u()}));

  const Change& del = rec.changes[4];
  EXPECT_EQ(del.op, Op::Delete);
  EXPECT_EQ(del.lsn, 0x16B3748u);
  EXPECT_EQ(del.old_row, (Row{t("8"), absent(), absent()}));
  EXPECT_FALSE(del.new_row);

  for (int i : {5, 6}) {
    const Change& tr = rec.changes[static_cast<std::size_t>(i)];
    EXPECT_EQ(tr.op, Op::Truncate);
    EXPECT_EQ(tr.truncate_options, 3);
    EXPECT_FALSE(tr.old_row);
    EXPECT_FALSE(tr.new_row);
  }
  EXPECT_EQ(rec.changes[5].relation->name, "blog_post");
  EXPECT_EQ(rec.changes[6].relation->name, "tag");
}

TEST(ChangeStream, KeyTupleKeepsNullKeyColumns) {
  ChangeStream stream;
  Recorder rec;
  feed_all(stream, rec,
           {{testing::relation_msg(1, "s", "t", 'i', {{1, "a", 23, -1}, {0, "b", 23, -1}}), 1},
            {testing::begin_msg(10, 0, 1), 2},
            {testing::delete_msg(1, 'K', {null(), text("x")}), 3}});
  // A key column's 'n' is a real NULL; a non-key column's value is dropped even if sent.
  EXPECT_EQ(rec.changes.at(0).old_row, (Row{n(), absent()}));
}

TEST(ChangeStream, DeleteWithFullOldRow) {
  ChangeStream stream;
  Recorder rec;
  feed_all(stream, rec,
           {{tag_relation(), 1},
            {testing::begin_msg(10, 0, 1), 2},
            {testing::delete_msg(kTag, 'O', {text("1"), null()}), 3}});
  EXPECT_EQ(rec.changes.at(0).old_row, (Row{t("1"), n()}));
}

TEST(ChangeStream, SchemaChangeMidStream) {
  ChangeStream stream;
  Recorder rec;
  feed_all(stream, rec,
           {{testing::begin_msg(0x100, 1, 50), 0x10},
            {post_relation(), 0x10},
            {testing::insert_msg(kPost, {text("1"), text("2"), text("a")}), 0x20},
            {testing::relation_msg(kPost, "public", "blog_post", 'd',
                                   {{1, "id", 23, -1},
                                    {0, "category_id", 23, -1},
                                    {0, "title", 25, -1},
                                    {0, "slug", 25, -1}}),
             0x30},
            {testing::insert_msg(kPost, {text("2"), text("2"), text("b"), text("b-slug")}), 0x40},
            {testing::commit_msg(0x100, 0x130, 1), 0x130}});
  ASSERT_EQ(rec.changes.size(), 2u);
  EXPECT_EQ(rec.changes[0].relation->columns.size(), 3u);  // the schema it was decoded with
  EXPECT_EQ(rec.changes[1].relation->columns.size(), 4u);
  EXPECT_EQ(rec.changes[1].relation->column_index("slug"), 3);
  EXPECT_EQ(stream.relations().size(), 1u);
  // The old three-column tuple no longer fits.
  feed_all(stream, rec, {{testing::begin_msg(0x200, 1, 51), 0x140}});
  EXPECT_THROW(
      stream.feed(testing::insert_msg(kPost, {text("3"), text("2"), text("c")}), 0x150, rec),
      StreamError);
}

TEST(ChangeStream, IgnoresOriginTypeAndMessages) {
  ChangeStream stream;
  Recorder rec;
  feed_all(stream, rec,
           {{MessageBuilder('M').u8(0).u64(1).cstring("p").i32(1).bytes("x"), 1},
            {testing::begin_msg(10, 0, 1), 2},
            {MessageBuilder('O').u64(5).cstring("origin"), 2},
            {MessageBuilder('Y').u32(9000).cstring("public").cstring("mood"), 3},
            {MessageBuilder('M').u8(1).u64(1).cstring("p").i32(0), 4},
            {testing::commit_msg(10, 20, 0), 5}});
  EXPECT_EQ(rec.events.size(), 2u);
  EXPECT_TRUE(rec.changes.empty());
}

std::string stream_error(ChangeStream& stream, Recorder& rec, std::string_view data, Lsn lsn) {
  try {
    stream.feed(data, lsn, rec);
  } catch (const StreamError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ChangeStream, ErrorsNameLsnTypeAndTable) {
  struct Case {
    const char* name;
    bool in_transaction;
    std::string data;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"unknown relation", true, testing::insert_msg(99, {text("1")}),
       "pgoutput message 'I' (insert) at 0/16B3748: relation OID 99 was never announced by a "
       "Relation message"},
      {"unknown truncated relation", true, testing::truncate_msg(0, {kPost, 99}),
       "pgoutput message 'T' (truncate) at 0/16B3748: relation OID 99 was never announced by a "
       "Relation message"},
      {"new tuple too short", true, testing::insert_msg(kPost, {text("1"), text("2")}),
       "pgoutput message 'I' (insert) at 0/16B3748 on table public.blog_post: new tuple has 2 "
       "columns, relation has 3"},
      {"old tuple too long", true,
       testing::update_msg(kPost, 'O', {text("1"), text("2"), text("3"), text("4")},
                           {text("1"), text("2"), text("3")}),
       "pgoutput message 'U' (update) at 0/16B3748 on table public.blog_post: old tuple has 4 "
       "columns, relation has 3"},
      {"delete tuple", true, testing::delete_msg(kPost, 'K', {text("1")}),
       "pgoutput message 'D' (delete) at 0/16B3748 on table public.blog_post: old tuple has 1 "
       "columns, relation has 3"},
      {"insert outside transaction", false,
       testing::insert_msg(kPost, {text("1"), text("2"), text("3")}),
       "pgoutput message 'I' (insert) at 0/16B3748 on table public.blog_post: change outside a "
       "transaction (no Begin before it)"},
      {"truncate outside transaction", false, testing::truncate_msg(0, {kPost}),
       "pgoutput message 'T' (truncate) at 0/16B3748 on table public.blog_post: change outside a "
       "transaction (no Begin before it)"},
      {"commit outside transaction", false, testing::commit_msg(1, 2, 3),
       "pgoutput message 'C' (commit) at 0/16B3748: Commit outside a transaction (no Begin "
       "before it)"},
      {"begin inside transaction", true, testing::begin_msg(0x300, 0, 46),
       "pgoutput message 'B' (begin) at 0/16B3748: Begin of xid 46 inside transaction 45 (no "
       "Commit before it)"},
      {"decode error with known table", true,
       MessageBuilder('U').u32(kPost).u8('N').i16(1).u8('t').bytes("\0\0"s),
       "pgoutput message 'U' (update) at 0/16B3748 on table public.blog_post: truncated: need 4 "
       "bytes at offset 9 of 11"},
      {"decode error with unknown table", true, MessageBuilder('D').u32(5).u8('X'),
       "pgoutput message 'D' (delete) at 0/16B3748: expected 'K' or 'O' old tuple, got 'X' at "
       "offset 5 of 6"},
      {"unknown message type", false, "Q"s,
       "pgoutput message 'Q' (unknown) at 0/16B3748: unknown message type 'Q'"},
      {"empty message", false, ""s, "pgoutput message at 0/16B3748: empty message"},
  };
  for (const auto& c : cases) {
    ChangeStream stream;
    Recorder rec;
    stream.feed(post_relation(), 0x16B3000, rec);
    if (c.in_transaction) stream.feed(testing::begin_msg(0x200, 0, 45), 0x16B3100, rec);
    EXPECT_EQ(stream_error(stream, rec, c.data, 0x16B3748), c.expected) << c.name;
    // Nothing half-delivered: a failed message calls no handler.
    EXPECT_TRUE(rec.changes.empty()) << c.name;
  }
}

TEST(ChangeStream, ResetForgetsRelationsAndTransaction) {
  ChangeStream stream;
  Recorder rec;
  feed_all(stream, rec, {{post_relation(), 1}, {testing::begin_msg(10, 0, 1), 2}});
  EXPECT_TRUE(stream.in_transaction());
  stream.reset();
  EXPECT_FALSE(stream.in_transaction());
  EXPECT_EQ(stream.relations().size(), 0u);
  // A new session starts with Begin again; the old relation is unknown until re-announced.
  stream.feed(testing::begin_msg(10, 0, 1), 3, rec);
  EXPECT_THROW(stream.feed(testing::insert_msg(kPost, {text("1"), text("2"), text("3")}), 4, rec),
               StreamError);
}

TEST(ChangeStream, ConsecutiveTransactions) {
  ChangeStream stream;
  Recorder rec;
  feed_all(stream, rec,
           {{post_relation(), 1},
            {testing::begin_msg(0x10, 100, 1), 2},
            {testing::insert_msg(kPost, {text("1"), null(), null()}), 3},
            {testing::commit_msg(0x10, 0x18, 100), 4},
            {testing::begin_msg(0x20, 200, 2), 5},
            {testing::insert_msg(kPost, {text("2"), null(), null()}), 6},
            {testing::commit_msg(0x20, 0x28, 200), 7}});
  ASSERT_EQ(rec.changes.size(), 2u);
  EXPECT_EQ(rec.changes[0].xid, 1u);
  EXPECT_EQ(rec.changes[0].commit_lsn, 0x10u);
  EXPECT_EQ(rec.changes[1].xid, 2u);
  EXPECT_EQ(rec.changes[1].commit_lsn, 0x20u);
  EXPECT_EQ(rec.changes[1].commit_time_us, 200);
}

// The stream of a real PostgreSQL 15 server (see tests/unit/data/pg15_pgoutput_stream.sql).
TEST(ChangeStream, RealServerStream) {
  ChangeStream stream;
  Recorder rec;
  for (const auto& m : testing::load_captured("pg15_pgoutput_stream.txt")) {
    ASSERT_NO_THROW(stream.feed(m.data, m.lsn, rec)) << format_lsn(m.lsn);
  }
  EXPECT_FALSE(stream.in_transaction());
  std::vector<std::string> events;
  for (const auto& e : rec.events) events.push_back(e.substr(0, e.find(" time=")));
  EXPECT_EQ(events, (std::vector<std::string>{
                        "begin xid=731 final=0/153AD38",
                        "relation public.blog_post columns=4",
                        "insert public.blog_post",
                        "insert public.blog_post",
                        "relation app.tag columns=2",
                        "insert app.tag",
                        "commit xid=731 commit=0/153AD38 end=0/153AD68",
                        "begin xid=732 final=0/153AFD8",
                        "update public.blog_post",
                        "update public.blog_post",
                        "update app.tag",
                        "delete public.blog_post",
                        "delete app.tag",
                        "commit xid=732 commit=0/153AFD8 end=0/153B008",
                        "begin xid=734 final=0/153B408",
                        "relation public.blog_post columns=5",
                        "insert public.blog_post",
                        "commit xid=734 commit=0/153B408 end=0/153B438",
                        "begin xid=735 final=0/153B518",
                        "relation app.mood_log columns=2",
                        "insert app.mood_log",
                        "commit xid=735 commit=0/153B518 end=0/153B548",
                        "begin xid=736 final=0/153CC40",
                        "relation public.blog_post columns=5",
                        "relation app.tag columns=2",
                        "truncate public.blog_post",
                        "truncate app.tag",
                        "commit xid=736 commit=0/153CC40 end=0/153CEE0",
                    }));
  const auto& c = rec.changes;
  ASSERT_EQ(c.size(), 12u);
  ASSERT_TRUE(c[0].new_row);
  EXPECT_EQ((*c[0].new_row)[3].text.size(), 9600u);  // inserts always carry TOASTed values
  EXPECT_EQ(c[1].new_row, (Row{t("2"), n(), t("it's \"quoted\"\nnew line \xc3\xa9"), n()}));
  // Key unchanged: no old row, and the TOASTed body is not sent.
  EXPECT_FALSE(c[3].old_row);
  EXPECT_EQ(c[3].new_row, (Row{t("1"), t("4"), t("hello"), u()}));
  // Key changed: 'K' old tuple with only the key known.
  EXPECT_EQ(c[4].old_row, (Row{t("2"), absent(), absent(), absent()}));
  EXPECT_EQ(c[4].new_row->at(0), t("10"));
  EXPECT_EQ(c[5].old_row, (Row{t("1"), t("old")}));  // REPLICA IDENTITY FULL
  EXPECT_EQ(c[5].new_row, (Row{t("1"), t("new")}));
  EXPECT_EQ(c[6].old_row, (Row{t("10"), absent(), absent(), absent()}));
  EXPECT_EQ(c[7].old_row, (Row{t("1"), t("new")}));
  EXPECT_EQ(c[8].new_row, (Row{t("3"), t("1"), t("t"), n(), t("slug-3")}));
  EXPECT_EQ(c[8].relation->column_index("slug"), 4);
  EXPECT_EQ(c[6].relation->columns.size(), 4u);  // decoded before the ALTER TABLE
  EXPECT_EQ(c[9].new_row, (Row{t("1"), t("happy")}));
  EXPECT_EQ(c[10].truncate_options, 2);
  EXPECT_EQ(c[11].relation->name, "tag");
  for (const auto& change : c) {
    EXPECT_NE(change.lsn, kInvalidLsn);
    EXPECT_GE(change.lsn, 0x153AAC8u);
  }
}

// Not a benchmark, a guard against accidental quadratic work or copies per change: a
// million-change rate would take ~10 s only if something were badly wrong.
class CountingHandler : public ChangeHandler {
 public:
  void on_begin(const TransactionBegin&) override {}
  void on_change(const Change& c) override { bytes += c.new_row->at(2).text.size(); }
  void on_commit(const TransactionCommit&) override {}
  std::size_t bytes = 0;
};

TEST(ChangeStream, DecodesManyChangesQuickly) {
  ChangeStream stream;
  CountingHandler handler;
  stream.feed(post_relation(), 1, handler);
  stream.feed(testing::begin_msg(0x10, 0, 1), 2, handler);
  const std::string insert =
      testing::insert_msg(kPost, {text("123456"), text("42"), text("a title of some length")});
  constexpr int kChanges = 200000;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kChanges; ++i) stream.feed(insert, 3, handler);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(handler.bytes, static_cast<std::size_t>(kChanges) * 22);
  EXPECT_LT(seconds, 5.0);
  std::printf("%d changes in %.3f s (%.0f changes/s)\n", kChanges, seconds, kChanges / seconds);
}

}  // namespace
}  // namespace walbust
