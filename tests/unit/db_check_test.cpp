#include "walbust/core/db_check.h"

#include <gtest/gtest.h>

#include <functional>

namespace walbust {
namespace {

// The blog rules (rules/blog.yaml) as RuleSet::table_needs() describes them.
DatabaseNeeds blog_needs() {
  DatabaseNeeds n;
  const std::set<Op> all = {Op::Insert, Op::Update, Op::Delete, Op::Truncate};
  n.tables.push_back(TableNeeds{"public", "blog_category", {"id"}, false, {"id"}, all});
  n.tables.push_back(TableNeeds{"public", "blog_comment", {"post_id"}, false, {"post_id"}, all});
  n.tables.push_back(TableNeeds{"public",
                                "blog_post",
                                {"author_id", "category_id", "id", "view_count"},
                                true,
                                {"author_id", "category_id", "id"},
                                all});
  n.rules.push_back(RuleInfo{"post-pages", "rules/blog.yaml", 16, "public", "blog_post", {}});
  n.rules.push_back(
      RuleInfo{"comment-post-page", "rules/blog.yaml", 27, "public", "blog_comment", {}});
  n.rules.push_back(
      RuleInfo{"category-pages", "rules/blog.yaml", 33, "public", "blog_category", {}});
  n.publication = "walbust";
  n.slot = "walbust";
  n.create_slot = true;
  return n;
}

TableFacts table(std::string name, std::vector<std::string> columns, char identity) {
  TableFacts t;
  t.schema = "public";
  t.name = std::move(name);
  t.exists = true;
  t.columns = std::move(columns);
  t.replica_identity = identity;
  t.primary_key = {"id"};
  t.identity_columns = identity == 'f' ? t.columns : t.primary_key;
  t.in_publication = true;
  t.published_columns = t.columns;
  return t;
}

// A database prepared exactly as the blog rules need.
DatabaseFacts good_facts() {
  DatabaseFacts f;
  f.database = "app";
  f.wal_level = "logical";
  f.max_replication_slots = 10;
  f.max_wal_senders = 10;
  f.replication_slots_used = 1;
  f.role = "walbust";
  f.role_can_replicate = true;
  f.publication = PublicationFacts{true, false, true, true, true, true};
  f.tables.push_back(table("blog_category", {"id", "name", "slug"}, 'd'));
  f.tables.push_back(
      table("blog_comment", {"id", "post_id", "author_name", "body", "created_at"}, 'f'));
  f.tables.push_back(table("blog_post",
                           {"id", "title", "slug", "content", "author_id", "category_id",
                            "is_featured", "view_count", "created_at", "updated_at"},
                           'f'));
  f.slot = SlotFacts{true, "pgoutput", "logical", "app", "reserved", false, 0};
  return f;
}

TableFacts& facts_table(DatabaseFacts& f, const std::string& name) {
  for (auto& t : f.tables) {
    if (t.name == name) return t;
  }
  throw std::runtime_error("no table " + name);
}

std::vector<Finding> problems(const std::vector<Finding>& findings) {
  std::vector<Finding> out;
  for (const auto& f : findings) {
    if (!f.ok) out.push_back(f);
  }
  return out;
}

TEST(DbCheck, PreparedDatabasePassesEveryCheck) {
  const auto findings = check_database(blog_needs(), good_facts());
  EXPECT_EQ(count_problems(findings), 0U);
  std::vector<std::string> lines;
  for (const auto& f : findings) lines.push_back(format_finding(f));
  const std::vector<std::string> expected = {
      "ok    wal_level is logical",
      "ok    max_replication_slots is 10",
      "ok    max_wal_senders is 10",
      "ok    role walbust may replicate",
      "ok    publication walbust exists",
      "ok    publication walbust publishes insert, update, delete, truncate, which the rules "
      "listen to",
      "ok    table public.blog_category exists",
      "ok    table public.blog_category has every column the rules name (id)",
      "ok    publication walbust contains table public.blog_category",
      "ok    table public.blog_category: replica identity default (primary key id) carries the "
      "previous values the "
      "rules use",
      "ok    table public.blog_comment exists",
      "ok    table public.blog_comment has every column the rules name (post_id)",
      "ok    publication walbust contains table public.blog_comment",
      "ok    table public.blog_comment has REPLICA IDENTITY FULL",
      "ok    table public.blog_post exists",
      "ok    table public.blog_post has every column the rules name (author_id, category_id, id, "
      "view_count)",
      "ok    publication walbust contains table public.blog_post",
      "ok    table public.blog_post has REPLICA IDENTITY FULL",
      "ok    slot walbust is a logical pgoutput slot",
      "ok    slot walbust has its WAL (wal_status reserved)",
  };
  EXPECT_EQ(lines, expected);
  EXPECT_EQ(format_summary(findings), "20 checks, 0 problems");
}

struct ProblemCase {
  const char* name;
  std::function<void(DatabaseNeeds&, DatabaseFacts&)> change;
  std::vector<Finding> expected;  // the problems, in order
};

// Names the case in test listings instead of dumping its bytes.
void PrintTo(const ProblemCase& c, std::ostream* os) { *os << c.name; }

class DbCheckProblems : public testing::TestWithParam<ProblemCase> {};

TEST_P(DbCheckProblems, ReportsEachProblemWithItsFix) {
  DatabaseNeeds needs = blog_needs();
  DatabaseFacts facts = good_facts();
  GetParam().change(needs, facts);
  EXPECT_EQ(problems(check_database(needs, facts)), GetParam().expected);
}

Finding fail(std::string message, std::string fix) {
  return Finding{false, std::move(message), std::move(fix)};
}

const ProblemCase kProblemCases[] = {
    {"wal_level_replica",
     [](DatabaseNeeds&, DatabaseFacts& f) { f.wal_level = "replica"; },
     {fail("wal_level is replica, logical decoding needs logical",
           "ALTER SYSTEM SET wal_level = logical; -- then restart PostgreSQL")}},
    {"no_slots_or_senders",
     [](DatabaseNeeds&, DatabaseFacts& f) {
       f.max_replication_slots = 0;
       f.max_wal_senders = 0;
     },
     {fail("max_replication_slots is 0: no replication slot can exist",
           "ALTER SYSTEM SET max_replication_slots = 10; -- then restart PostgreSQL"),
      fail("max_wal_senders is 0: no replication connection is accepted",
           "ALTER SYSTEM SET max_wal_senders = 10; -- then restart PostgreSQL")}},
    {"role_cannot_replicate",
     [](DatabaseNeeds&, DatabaseFacts& f) {
       f.role = "App \"Reader\"";
       f.role_can_replicate = false;
     },
     {fail(
         "role App \"Reader\" may not replicate (it needs the REPLICATION attribute or superuser)",
         "ALTER ROLE \"App \"\"Reader\"\"\" REPLICATION;")}},
    {"publication_missing",
     [](DatabaseNeeds&, DatabaseFacts& f) {
       f.publication = PublicationFacts{};
       for (auto& t : f.tables) t.in_publication = false;
     },
     {fail("publication walbust does not exist",
           "CREATE PUBLICATION \"walbust\" FOR TABLE \"public\".\"blog_category\", "
           "\"public\".\"blog_comment\", "
           "\"public\".\"blog_post\" WITH (publish = 'insert, update, delete, truncate');")}},
    {"publication_missing_lists_only_existing_tables_and_needed_ops",
     [](DatabaseNeeds& n, DatabaseFacts& f) {
       f.publication = PublicationFacts{};
       n.publication = "Pub's";
       for (auto& t : n.tables) t.ops = {Op::Insert, Op::Delete};
       facts_table(f, "blog_comment").exists = false;
     },
     {fail("publication Pub's does not exist",
           "CREATE PUBLICATION \"Pub's\" FOR TABLE \"public\".\"blog_category\", "
           "\"public\".\"blog_post\" WITH "
           "(publish = 'insert, delete');"),
      fail("table public.blog_comment does not exist (named by rule comment-post-page at "
           "rules/blog.yaml:27)",
           "-- create the table, or correct the rule's table:")}},
    {"publication_lacks_operations_keeps_the_others",
     [](DatabaseNeeds& n, DatabaseFacts& f) {
       for (auto& t : n.tables) t.ops = {Op::Update, Op::Delete};
       f.publication = PublicationFacts{true, false, true, false, false, true};
     },
     {fail("publication walbust does not publish update, delete, which the rules listen to",
           "ALTER PUBLICATION \"walbust\" SET (publish = 'insert, update, delete, truncate');")}},
    {"table_not_in_publication",
     [](DatabaseNeeds&, DatabaseFacts& f) { facts_table(f, "blog_post").in_publication = false; },
     {fail("publication walbust does not contain table public.blog_post",
           "ALTER PUBLICATION \"walbust\" ADD TABLE \"public\".\"blog_post\";")}},
    {"leaf_published_under_its_root",
     [](DatabaseNeeds&, DatabaseFacts& f) {
       auto& t = facts_table(f, "blog_post");
       t.in_publication = false;
       t.published_under = "public.posts";
     },
     {fail("publication walbust publishes the changes of public.blog_post under its partition "
           "root public.posts (publish_via_partition_root = true), where rules on "
           "public.blog_post cannot tell its rows apart (named by rule post-pages at "
           "rules/blog.yaml:16)",
           "-- put these rules on public.posts, or: ALTER PUBLICATION \"walbust\" SET "
           "(publish_via_partition_root = false);")}},
    {"partitions_lacking_full_identity",
     [](DatabaseNeeds&, DatabaseFacts& f) {
       auto& t = facts_table(f, "blog_post");
       t.relkind = 'p';
       t.partitions = {{"public.post_a", 'f'}, {"public.post_b", 'd'}, {"shop.post_c", 'd'}};
     },
     {fail("partitions public.post_b, shop.post_c of public.blog_post lack REPLICA IDENTITY FULL: "
           "rules compare old and new rows (changed, ignore_changes, when) or render {old.x}",
           "ALTER TABLE \"public\".\"post_b\" REPLICA IDENTITY FULL; ALTER TABLE "
           "\"shop\".\"post_c\" REPLICA IDENTITY FULL;")}},
    {"partitions_with_full_identity",
     [](DatabaseNeeds&, DatabaseFacts& f) {
       auto& t = facts_table(f, "blog_post");
       t.relkind = 'p';
       t.replica_identity = 'd';
       t.partitions = {{"public.post_a", 'f'}};
     },
     {}},
    {"all_tables_publication_needs_no_membership",
     [](DatabaseNeeds&, DatabaseFacts& f) { f.publication.all_tables = true; },
     {}},
    {"column_list_without_rule_columns",
     [](DatabaseNeeds&, DatabaseFacts& f) {
       facts_table(f, "blog_post").published_columns = {"id", "title"};
     },
     {fail("publication walbust has a column list for table public.blog_post without columns the "
           "rules name: "
           "author_id, category_id, view_count",
           "BEGIN; ALTER PUBLICATION \"walbust\" DROP TABLE \"public\".\"blog_post\"; ALTER "
           "PUBLICATION \"walbust\" "
           "ADD TABLE \"public\".\"blog_post\"; COMMIT;")}},
    {"row_filter",
     [](DatabaseNeeds&, DatabaseFacts& f) {
       facts_table(f, "blog_comment").row_filter = "(post_id > 10)";
     },
     {fail("publication walbust filters the rows of table public.blog_comment (WHERE (post_id > "
           "10)): changes it "
           "filters out invalidate nothing",
           "BEGIN; ALTER PUBLICATION \"walbust\" DROP TABLE \"public\".\"blog_comment\"; ALTER "
           "PUBLICATION "
           "\"walbust\" ADD TABLE \"public\".\"blog_comment\"; COMMIT;")}},
    {"table_missing",
     [](DatabaseNeeds& n, DatabaseFacts& f) {
       n.rules.push_back(RuleInfo{"post-feed", "rules/feed.yaml", 4, "public", "blog_post", {}});
       facts_table(f, "blog_post") = TableFacts{"public", "blog_post"};
     },
     {fail("table public.blog_post does not exist (named by rules post-pages at "
           "rules/blog.yaml:16, post-feed at "
           "rules/feed.yaml:4)",
           "-- create the table, or correct the rule's table:")}},
    {"column_missing",
     [](DatabaseNeeds& n, DatabaseFacts&) {
       n.tables[2].columns.insert("subtitle");
       n.tables[2].old_value_columns.insert("subtitle");
     },
     {fail("column subtitle of table public.blog_post does not exist (named by rule post-pages at "
           "rules/blog.yaml:16)",
           "-- correct the rule, or ALTER TABLE \"public\".\"blog_post\" ADD COLUMN \"subtitle\" "
           "...;")}},
    {"old_row_needed_without_full",
     [](DatabaseNeeds&, DatabaseFacts& f) {
       auto& t = facts_table(f, "blog_post");
       t.replica_identity = 'd';
       t.identity_columns = {"id"};
     },
     {fail("table public.blog_post has replica identity default (primary key id) but needs FULL: "
           "rules compare old "
           "and new rows (changed, ignore_changes, when) or render {old.x}",
           "ALTER TABLE \"public\".\"blog_post\" REPLICA IDENTITY FULL;")}},
    {"previous_values_outside_the_key",
     [](DatabaseNeeds&, DatabaseFacts& f) {
       auto& t = facts_table(f, "blog_comment");
       t.replica_identity = 'i';
       t.identity_columns = {"id"};
     },
     {fail("table public.blog_comment has replica identity index (id) but needs FULL: rules render "
           "previous values "
           "of post_id on update or delete",
           "ALTER TABLE \"public\".\"blog_comment\" REPLICA IDENTITY FULL;")}},
    {"previous_values_in_an_index_identity",
     [](DatabaseNeeds&, DatabaseFacts& f) {
       auto& t = facts_table(f, "blog_comment");
       t.replica_identity = 'i';
       t.identity_columns = {"id", "post_id"};
     },
     {}},
    {"insert_only_rules_need_no_previous_values",
     [](DatabaseNeeds& n, DatabaseFacts& f) {
       n.tables[1].ops = {Op::Insert};
       auto& t = facts_table(f, "blog_comment");
       t.replica_identity = 'd';
       t.identity_columns = {"id"};
     },
     {}},
    {"identity_nothing_with_update_rules",
     [](DatabaseNeeds&, DatabaseFacts& f) {
       auto& t = facts_table(f, "blog_category");
       t.replica_identity = 'n';
       t.identity_columns = {};
     },
     {fail("table public.blog_category has replica identity nothing but needs FULL: rules render "
           "previous values "
           "of id on update or delete",
           "ALTER TABLE \"public\".\"blog_category\" REPLICA IDENTITY FULL;")}},
    {"no_primary_key_while_updates_are_published",
     [](DatabaseNeeds& n, DatabaseFacts& f) {
       n.tables[0].ops = {Op::Insert};
       n.tables[0].old_value_columns.clear();
       auto& t = facts_table(f, "blog_category");
       t.primary_key = {};
       t.identity_columns = {};
     },
     {fail("table public.blog_category has replica identity default, without a primary key but "
           "needs FULL: it has "
           "no replica identity, so PostgreSQL rejects UPDATE and DELETE on it while the "
           "publication publishes them",
           "ALTER TABLE \"public\".\"blog_category\" REPLICA IDENTITY FULL;")}},
    {"no_primary_key_fine_when_nothing_but_inserts_is_published",
     [](DatabaseNeeds& n, DatabaseFacts& f) {
       for (auto& t : n.tables) t.ops = {Op::Insert};
       f.publication = PublicationFacts{true, false, true, false, false, false};
       auto& t = facts_table(f, "blog_category");
       t.primary_key = {};
       t.identity_columns = {};
     },
     {}},
    {"slot_missing_without_create_slot",
     [](DatabaseNeeds& n, DatabaseFacts& f) {
       n.create_slot = false;
       n.slot = "wal'bust";
       f.slot = SlotFacts{};
     },
     {fail("slot wal'bust does not exist and create_slot is false",
           "SELECT pg_catalog.pg_create_logical_replication_slot('wal''bust', 'pgoutput');")}},
    {"slot_missing_after_walbust_streamed_from_it",
     [](DatabaseNeeds& n, DatabaseFacts& f) {
       f.slot = SlotFacts{};
       n.streamed = DatabaseNeeds::Streamed{"app", 0x16B3748, "/var/lib/walbust/walbust.state"};
     },
     {fail("slot walbust is missing although walbust streamed from it up to 0/16B3748: changes "
           "were missed and "
           "caches may be stale",
           "-- set on_gap: flush_rules (or flushdb) and restart walbust, which flushes the keys "
           "and creates the "
           "slot; or flush the caches yourself, then delete /var/lib/walbust/walbust.state")}},
    {"state_of_another_database_is_no_gap",
     [](DatabaseNeeds& n, DatabaseFacts& f) {
       f.slot = SlotFacts{};
       n.streamed = DatabaseNeeds::Streamed{"shop", 0x16B3748, "/var/lib/walbust/walbust.state"};
     },
     {}},
    {"slot_missing_and_no_free_slot",
     [](DatabaseNeeds&, DatabaseFacts& f) {
       f.slot = SlotFacts{};
       f.replication_slots_used = 10;
     },
     {fail("no free replication slot for walbust (10 of 10 in use)",
           "ALTER SYSTEM SET max_replication_slots = 20; -- then restart PostgreSQL, or drop an "
           "unused slot")}},
    {"slot_physical",
     [](DatabaseNeeds&, DatabaseFacts& f) {
       f.slot = SlotFacts{true, "", "physical", "", "reserved", false, 0};
     },
     {fail("slot walbust is a physical slot, walbust needs a logical one",
           "SELECT pg_catalog.pg_drop_replication_slot('walbust'); -- if nothing else uses it; or "
           "set postgres.slot "
           "to another name")}},
    {"slot_other_plugin",
     [](DatabaseNeeds&, DatabaseFacts& f) { f.slot.plugin = "wal2json"; },
     {fail("slot walbust uses plugin wal2json, walbust needs pgoutput",
           "SELECT pg_catalog.pg_drop_replication_slot('walbust'); -- if nothing else uses it; or "
           "set postgres.slot "
           "to another name")}},
    {"slot_other_database",
     [](DatabaseNeeds&, DatabaseFacts& f) { f.slot.database = "shop"; },
     {fail("slot walbust belongs to database shop, not app",
           "-- set postgres.slot to another name, or connect to shop and run SELECT "
           "pg_catalog.pg_drop_replication_slot('walbust');")}},
    {"slot_lost",
     [](DatabaseNeeds&, DatabaseFacts& f) { f.slot.wal_status = "lost"; },
     {fail("slot walbust is lost (wal_status lost): PostgreSQL removed WAL it still needed, so "
           "changes were missed "
           "and caches may be stale",
           "-- set on_gap: flush_rules (or flushdb) and restart walbust, which flushes the keys "
           "and recreates the "
           "slot; or flush the caches yourself, then SELECT "
           "pg_catalog.pg_drop_replication_slot('walbust');")}},
};

INSTANTIATE_TEST_SUITE_P(Cases, DbCheckProblems, testing::ValuesIn(kProblemCases),
                         [](const testing::TestParamInfo<ProblemCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(DbCheck, MissingSlotIsFineWhenWalbustCreatesIt) {
  DatabaseFacts f = good_facts();
  f.slot = SlotFacts{};
  const auto findings = check_database(blog_needs(), f);
  EXPECT_EQ(count_problems(findings), 0U);
  EXPECT_EQ(
      findings.back(),
      (Finding{true, "slot walbust does not exist yet: walbust run creates it (create_slot: true)",
               ""}));
}

TEST(DbCheck, ActiveAndUnreservedSlotsAreReportedButPass) {
  DatabaseFacts f = good_facts();
  f.slot.active = true;
  f.slot.active_pid = 4242;
  f.slot.wal_status = "unreserved";
  const auto findings = check_database(blog_needs(), f);
  EXPECT_EQ(count_problems(findings), 0U);
  ASSERT_GE(findings.size(), 2U);
  EXPECT_EQ(findings[findings.size() - 2].message,
            "slot walbust is a logical pgoutput slot (in use by pid 4242)");
  EXPECT_EQ(findings.back().message,
            "slot walbust still has its WAL (wal_status unreserved: beyond max_wal_size, lost at "
            "the next checkpoint "
            "unless walbust catches up)");
}

TEST(DbCheck, MissingTableSkipsItsOtherChecks) {
  DatabaseFacts f = good_facts();
  facts_table(f, "blog_post") = TableFacts{"public", "blog_post"};
  const auto findings = check_database(blog_needs(), f);
  for (const auto& finding : findings) {
    if (finding.message.find("blog_post") == std::string::npos) continue;
    EXPECT_EQ(
        finding.message,
        "table public.blog_post does not exist (named by rule post-pages at rules/blog.yaml:16)");
  }
}

TEST(DbCheck, MissingColumnIsNotBlamedOnTheReplicaIdentity) {
  DatabaseNeeds n = blog_needs();
  n.tables[0].columns.insert("subtitle");
  n.tables[0].old_value_columns.insert("subtitle");
  const auto found = problems(check_database(n, good_facts()));
  ASSERT_EQ(found.size(), 1U);
  EXPECT_NE(found[0].message.find("column subtitle of table public.blog_category does not exist"),
            std::string::npos);
}

TEST(DbCheck, FormatsFindingsAndSummary) {
  EXPECT_EQ(format_finding(Finding{true, "wal_level is logical", ""}),
            "ok    wal_level is logical");
  EXPECT_EQ(format_finding(Finding{false, "x is wrong", "ALTER x;"}),
            "FAIL  x is wrong ; fix: ALTER x;");
  EXPECT_EQ(format_summary({Finding{true, "a", ""}}), "1 check, 0 problems");
  EXPECT_EQ(format_summary({Finding{true, "a", ""}, Finding{false, "b", "c"}}),
            "2 checks, 1 problem");
  EXPECT_EQ(format_summary({}), "0 checks, 0 problems");
}

TEST(DbCheck, ReplicaIdentityDecisionWithoutFacts) {
  const DatabaseNeeds n = blog_needs();
  EXPECT_EQ(replica_identity_full_reason(n.tables[2]),
            "rules compare old and new rows (changed, ignore_changes, when) or render {old.x}");
  EXPECT_EQ(replica_identity_full_reason(n.tables[0]),
            "rules render previous values of id on update or delete (not needed for replica "
            "identity columns; the "
            "database was not inspected)");
  TableNeeds inserts = n.tables[1];
  inserts.ops = {Op::Insert, Op::Truncate};
  EXPECT_EQ(replica_identity_full_reason(inserts), std::nullopt);
}

TEST(DbCheck, PartitionedTablesSayWhichPublicationFormIsInUse) {
  DatabaseFacts f = good_facts();
  facts_table(f, "blog_post").relkind = 'p';
  const auto message = [&] {
    for (const auto& finding : check_database(blog_needs(), f)) {
      if (finding.message.find("partitioned table public.blog_post") != std::string::npos)
        return finding.message;
    }
    return std::string();
  };
  EXPECT_EQ(message(),
            "publication walbust contains partitioned table public.blog_post with "
            "publish_via_partition_root = false: changes arrive under each partition's name, "
            "which walbust maps back to public.blog_post");
  f.publication.via_root = true;
  EXPECT_EQ(message(),
            "publication walbust contains partitioned table public.blog_post with "
            "publish_via_partition_root = true: changes of every partition arrive under "
            "public.blog_post");
}

TEST(DbCheck, PublishViaRootWhenARuleTableIsPartitionedAndNoneIsAPartitionOfAnother) {
  const DatabaseNeeds n = blog_needs();
  DatabaseFacts f = good_facts();
  EXPECT_FALSE(wants_publish_via_root(n, f));
  facts_table(f, "blog_post").relkind = 'p';
  EXPECT_TRUE(wants_publish_via_root(n, f));
  facts_table(f, "blog_comment").ancestors = {"public.blog_post"};
  EXPECT_FALSE(wants_publish_via_root(n, f));
}

TEST(DbCheck, PublishOptionListsOperationsInCanonicalOrder) {
  std::vector<TableNeeds> tables(2);
  tables[0].ops = {Op::Truncate, Op::Insert};
  tables[1].ops = {Op::Delete};
  EXPECT_EQ(publish_option(tables), "insert, delete, truncate");
}

TEST(CheckReplicas, EachReplicaIsReachableInRecoveryAndItsPositionReadable) {
  std::vector<ReplicaFacts> replicas(4);
  replicas[0] = ReplicaFacts{"a:5432", true, "", true, true, Lsn{0x1000}};
  replicas[1] = ReplicaFacts{"b:5432", false, "connection refused", false, false, std::nullopt};
  replicas[2] = ReplicaFacts{"c:5432", true, "", false, true, std::nullopt};
  replicas[3] = ReplicaFacts{"d:5432", true, "", true, false, std::nullopt};
  const auto f = check_replicas(replicas);
  ASSERT_EQ(f.size(), 4u);
  EXPECT_TRUE(f[0].ok);
  EXPECT_EQ(f[0].message, "replica a:5432 is a standby in recovery, replayed up to 0/1000");
  EXPECT_FALSE(f[1].ok);
  EXPECT_EQ(f[1].message, "replica b:5432 is unreachable: connection refused");
  EXPECT_FALSE(f[2].ok);
  EXPECT_EQ(f[2].message, "replica c:5432 is not in recovery: it is a primary, not a read replica");
  EXPECT_FALSE(f[3].ok);
  EXPECT_NE(f[3].fix.find("GRANT EXECUTE ON FUNCTION pg_catalog.pg_last_wal_replay_lsn()"),
            std::string::npos);
}

}  // namespace
}  // namespace walbust
