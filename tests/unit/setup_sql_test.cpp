#include "walbust/core/setup_sql.h"

#include <gtest/gtest.h>

namespace walbust {
namespace {

const std::set<Op> kAllOps = {Op::Insert, Op::Update, Op::Delete, Op::Truncate};

DatabaseNeeds blog_needs() {
  DatabaseNeeds n;
  n.tables.push_back(TableNeeds{"public", "blog_category", {"id"}, false, {"id"}, kAllOps});
  n.tables.push_back(
      TableNeeds{"public", "blog_comment", {"post_id"}, false, {"post_id"}, kAllOps});
  n.tables.push_back(TableNeeds{"public",
                                "blog_post",
                                {"author_id", "category_id", "id", "view_count"},
                                true,
                                {"author_id", "category_id", "id"},
                                kAllOps});
  n.publication = "walbust";
  n.slot = "walbust";
  return n;
}

TableFacts table(std::string name, char identity) {
  TableFacts t;
  t.schema = "public";
  t.name = std::move(name);
  t.exists = true;
  t.columns = {"id", "post_id", "author_id", "category_id", "view_count"};
  t.replica_identity = identity;
  t.primary_key = {"id"};
  t.identity_columns = identity == 'f' ? t.columns : t.primary_key;
  return t;
}

// A fresh database: tables with primary keys, nothing else.
DatabaseFacts fresh_facts() {
  DatabaseFacts f;
  f.database = "app";
  f.wal_level = "logical";
  f.max_replication_slots = 10;
  f.max_wal_senders = 10;
  f.role = "walbust";
  f.role_can_replicate = true;
  for (const char* name : {"blog_category", "blog_comment", "blog_post"})
    f.tables.push_back(table(name, 'd'));
  return f;
}

DatabaseFacts prepared_facts() {
  DatabaseFacts f = fresh_facts();
  f.publication = PublicationFacts{true, false, true, true, true, true};
  for (auto& t : f.tables) {
    t.in_publication = true;
    if (t.name != "blog_category")
      t = [&] {
        TableFacts full = table(t.name, 'f');
        full.in_publication = true;
        return full;
      }();
  }
  f.slot = SlotFacts{true, "pgoutput", "logical", "app", "reserved", false, 0};
  return f;
}

// Statement summaries (first comment line) with their in_place flag, in order.
std::vector<std::pair<std::string, bool>> outline(const SetupScript& s) {
  std::vector<std::pair<std::string, bool>> out;
  for (const auto& st : s.statements) out.emplace_back(st.comment.at(0), st.in_place);
  return out;
}

const SetupStatement& statement(const SetupScript& s, std::string_view summary) {
  for (const auto& st : s.statements) {
    if (st.comment.at(0) == summary) return st;
  }
  throw std::runtime_error("no statement " + std::string(summary));
}

TEST(SetupSql, WithoutFactsIsConservative) {
  const SetupScript s = setup_script(blog_needs(), nullptr);
  const std::vector<std::pair<std::string, bool>> expected = {
      {"Lock timeout 10s.", false},
      {"Publication walbust.", false},
      {"Publication walbust publishes insert, update, delete, truncate.", false},
      {"Publication walbust contains the tables the rules watch.", false},
      {"Table public.blog_category has REPLICA IDENTITY FULL.", false},
      {"Table public.blog_comment has REPLICA IDENTITY FULL.", false},
      {"Table public.blog_post has REPLICA IDENTITY FULL.", false},
      {"Slot walbust exists (logical, pgoutput).", false},
  };
  EXPECT_EQ(outline(s), expected);
  EXPECT_TRUE(s.statements[0].session);
  EXPECT_EQ(
      s.header.at(2),
      "Not tailored: the database was not inspected. Replica identities are set to FULL for every");
  EXPECT_EQ(statement(s, "Table public.blog_category has REPLICA IDENTITY FULL.").comment.at(1),
            "Because rules render previous values of id on update or delete (not needed for "
            "replica identity "
            "columns; the database was not inspected).");
}

TEST(SetupSql, StatementsAreExact) {
  const SetupScript s = setup_script(blog_needs(), nullptr);
  EXPECT_EQ(statement(s, "Lock timeout 10s.").sql, "SET lock_timeout = '10s';");
  EXPECT_EQ(
      statement(s, "Publication walbust.").sql,
      "DO $walbust$\n"
      "DECLARE\n"
      "  rule_tables pg_catalog.oid[] := "
      "ARRAY[pg_catalog.to_regclass('\"public\".\"blog_category\"')::pg_catalog.oid, "
      "pg_catalog.to_regclass('\"public\".\"blog_comment\"')::pg_catalog.oid, "
      "pg_catalog.to_regclass('\"public\".\"blog_post\"')::pg_catalog.oid]::pg_catalog.oid[];\n"
      "BEGIN\n"
      "  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = 'walbust') THEN\n"
      "    EXECUTE pg_catalog.format('CREATE PUBLICATION %I WITH (publish = %L, "
      "publish_via_partition_root = %s)',\n"
      "      'walbust', 'insert, update, delete, truncate',\n"
      "      CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = ANY "
      "(rule_tables) AND c.relkind = 'p')\n"
      "      AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(rule_tables) r(oid), "
      "pg_catalog.pg_partition_ancestors(r.oid) a\n"
      "        WHERE a.relid::pg_catalog.oid <> r.oid AND a.relid::pg_catalog.oid = ANY "
      "(rule_tables))\n"
      "      THEN 'true' ELSE 'false' END);\n"
      "  END IF;\n"
      "END\n"
      "$walbust$;");
  EXPECT_EQ(statement(s, "Publication walbust publishes insert, update, delete, truncate.").sql,
            "DO $walbust$\n"
            "DECLARE\n"
            "  p pg_catalog.pg_publication%ROWTYPE;\n"
            "BEGIN\n"
            "  SELECT * INTO STRICT p FROM pg_catalog.pg_publication WHERE pubname = 'walbust';\n"
            "  IF NOT p.pubinsert OR NOT p.pubupdate OR NOT p.pubdelete OR NOT p.pubtruncate THEN\n"
            "    EXECUTE pg_catalog.format('ALTER PUBLICATION %I SET (publish = %L)', p.pubname,\n"
            "      pg_catalog.concat_ws(', ', 'insert', 'update', 'delete', 'truncate'));\n"
            "  END IF;\n"
            "END\n"
            "$walbust$;");
  EXPECT_EQ(statement(s, "Table public.blog_post has REPLICA IDENTITY FULL.").sql,
            "DO $walbust$\n"
            "DECLARE\n"
            "  r record;\n"
            "BEGIN\n"
            "  IF (SELECT relreplident FROM pg_catalog.pg_class WHERE oid = "
            "'\"public\".\"blog_post\"'::pg_catalog.regclass) <> 'f' THEN\n"
            "    ALTER TABLE \"public\".\"blog_post\" REPLICA IDENTITY FULL;\n"
            "  END IF;\n"
            "  FOR r IN SELECT p.relid FROM pg_catalog.pg_partition_tree("
            "'\"public\".\"blog_post\"'::pg_catalog.regclass) p\n"
            "    JOIN pg_catalog.pg_class c ON c.oid = p.relid WHERE p.level > 0 AND c.relkind IN "
            "('r', 'p') AND c.relreplident <> 'f'\n"
            "  LOOP\n"
            "    EXECUTE pg_catalog.format('ALTER TABLE %s REPLICA IDENTITY FULL', r.relid);\n"
            "  END LOOP;\n"
            "END\n"
            "$walbust$;");
  EXPECT_EQ(statement(s, "Slot walbust exists (logical, pgoutput).").sql,
            "SELECT pg_catalog.pg_create_logical_replication_slot('walbust', 'pgoutput')\n"
            " WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = "
            "'walbust');");
}

TEST(SetupSql, APartitionedTableIsInPlaceOnlyWhenEveryPartitionIsFull) {
  DatabaseFacts facts = prepared_facts();
  for (auto& t : facts.tables) {
    if (t.name != "blog_post") continue;
    t.relkind = 'p';
    t.replica_identity = 'd';
    t.partitions = {{"public.post_a", 'f'}, {"public.post_b", 'd'}};
  }
  const std::string summary = "Table public.blog_post has REPLICA IDENTITY FULL.";
  EXPECT_FALSE(statement(setup_script(blog_needs(), &facts), summary).in_place);
  for (auto& t : facts.tables) {
    if (t.name == "blog_post") t.partitions[1].second = 'f';
  }
  EXPECT_TRUE(statement(setup_script(blog_needs(), &facts), summary).in_place);
}

TEST(SetupSql, TablesBlockChecksMembershipAndQuotesNames) {
  DatabaseNeeds n = blog_needs();
  n.publication = "Pub \"x\"";
  n.tables.resize(1);
  n.tables[0].schema = "Shop";
  n.tables[0].name = "it's";
  const SetupScript s = setup_script(n, nullptr);
  EXPECT_EQ(statement(s, "Publication Pub \"x\" contains the tables the rules watch.").sql,
            "DO $walbust$\n"
            "BEGIN\n"
            "  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel r JOIN "
            "pg_catalog.pg_publication p ON p.oid = r.prpubid WHERE p.pubname = 'Pub \"x\"' AND "
            "r.prrelid = '\"Shop\".\"it''s\"'::pg_catalog.regclass)\n"
            "     AND NOT (SELECT puballtables FROM pg_catalog.pg_publication WHERE pubname = 'Pub "
            "\"x\"') THEN\n"
            "    ALTER PUBLICATION \"Pub \"\"x\"\"\" ADD TABLE \"Shop\".\"it's\";\n"
            "  END IF;\n"
            "END\n"
            "$walbust$;");
}

TEST(SetupSql, PublishKeepsOperationsTheRulesDoNotNeed) {
  DatabaseNeeds n = blog_needs();
  for (auto& t : n.tables) t.ops = {Op::Insert, Op::Delete};
  const SetupScript s = setup_script(n, nullptr);
  const std::string& sql = statement(s, "Publication walbust publishes insert, delete.").sql;
  EXPECT_NE(sql.find("  IF NOT p.pubinsert OR NOT p.pubdelete THEN\n"), std::string::npos) << sql;
  EXPECT_NE(
      sql.find(
          "pg_catalog.concat_ws(', ', 'insert', CASE WHEN p.pubupdate THEN 'update' END, 'delete', "
          "CASE WHEN p.pubtruncate THEN 'truncate' END)"),
      std::string::npos)
      << sql;
  EXPECT_NE(statement(s, "Publication walbust.").sql.find("'walbust', 'insert, delete',"),
            std::string::npos);
}

TEST(SetupSql, TailoredToAFreshDatabase) {
  const DatabaseFacts facts = fresh_facts();
  const SetupScript s = setup_script(blog_needs(), &facts);
  const std::vector<std::pair<std::string, bool>> expected = {
      {"Lock timeout 10s.", false},
      {"Publication walbust.", false},
      // Covered by the CREATE PUBLICATION: skipped by --apply, not annotated.
      {"Publication walbust publishes insert, update, delete, truncate.", true},
      {"Publication walbust contains the tables the rules watch.", false},
      // blog_category's rules render only {id}, its primary key.
      {"Table public.blog_comment has REPLICA IDENTITY FULL.", false},
      {"Table public.blog_post has REPLICA IDENTITY FULL.", false},
      {"Slot walbust exists (logical, pgoutput).", false},
  };
  EXPECT_EQ(outline(s), expected);
  EXPECT_EQ(
      s.statements[2].comment.back(),
      "An existing publication gets the missing operations; those it already publishes are kept.");
  EXPECT_EQ(s.header.at(2), "Tailored to database app as seen by role walbust.");
  EXPECT_EQ(
      statement(s, "Table public.blog_post has REPLICA IDENTITY FULL.").comment.at(1),
      "Because rules compare old and new rows (changed, ignore_changes, when) or render {old.x}.");
}

TEST(SetupSql, TailoredToAPreparedDatabaseIsTheSameScriptInPlace) {
  const DatabaseFacts fresh = fresh_facts();
  const DatabaseFacts facts = prepared_facts();
  const SetupScript before = setup_script(blog_needs(), &fresh);
  const SetupScript after = setup_script(blog_needs(), &facts);
  ASSERT_EQ(before.statements.size(), after.statements.size());
  for (std::size_t i = 0; i < after.statements.size(); ++i) {
    EXPECT_EQ(before.statements[i].sql, after.statements[i].sql) << i;
    EXPECT_EQ(after.statements[i].in_place, !after.statements[i].session) << i;
    if (!after.statements[i].session) {
      EXPECT_EQ(after.statements[i].comment.back(), "(already in place)") << i;
    }
  }
}

TEST(SetupSql, ServerSettingsAndRoleWhenTheFactsNeedThem) {
  DatabaseFacts facts = fresh_facts();
  facts.wal_level = "replica";
  facts.max_wal_senders = 0;
  facts.role = "app user";
  facts.role_can_replicate = false;
  const SetupScript s = setup_script(blog_needs(), &facts);
  EXPECT_EQ(statement(s, "wal_level is logical (now replica).").sql,
            "ALTER SYSTEM SET wal_level = logical;");
  EXPECT_EQ(statement(s, "max_wal_senders is 10 (now 0).").sql,
            "ALTER SYSTEM SET max_wal_senders = 10;");
  EXPECT_EQ(statement(s, "Role app user may replicate.").sql,
            "ALTER ROLE \"app user\" REPLICATION;");
  // No slot before wal_level is logical: creating it would fail.
  const SetupStatement& slot =
      statement(s, "Slot walbust is not created yet: wal_level must be logical first.");
  EXPECT_EQ(slot.sql, "");
  EXPECT_EQ(s.text().find("pg_create_logical_replication_slot"), std::string::npos);
}

TEST(SetupSql, MissingTablesAreLeftOutWithANote) {
  DatabaseFacts facts = fresh_facts();
  facts.tables[1].exists = false;
  const SetupScript s = setup_script(blog_needs(), &facts);
  const SetupStatement& note =
      statement(s, "Not added to the publication, the table does not exist: public.blog_comment.");
  EXPECT_EQ(note.sql, "");
  const std::string text = s.text();
  EXPECT_EQ(text.find("ADD TABLE \"public\".\"blog_comment\""), std::string::npos);
  EXPECT_EQ(text.find("ALTER TABLE \"public\".\"blog_comment\""), std::string::npos);
  EXPECT_NE(text.find("ADD TABLE \"public\".\"blog_post\""), std::string::npos);
}

TEST(SetupSql, NoReplicaIdentityIsFixedWhenUpdatesArePublished) {
  DatabaseNeeds n = blog_needs();
  n.tables[0].ops = {Op::Insert};
  n.tables[0].old_value_columns.clear();
  DatabaseFacts facts = fresh_facts();
  facts.tables[0].primary_key.clear();
  facts.tables[0].identity_columns.clear();
  const SetupScript s = setup_script(n, &facts);
  EXPECT_EQ(
      statement(s, "Table public.blog_category has REPLICA IDENTITY FULL.").comment.at(1),
      "Because it has no replica identity, so PostgreSQL rejects UPDATE and DELETE on it while the "
      "publication publishes them.");
}

TEST(SetupSql, TextHasHeaderCommentsAndStatements) {
  DatabaseNeeds n;
  n.tables.push_back(TableNeeds{"public", "t", {"id"}, false, {}, {Op::Insert}});
  n.publication = "p";
  n.slot = "s";
  const std::string text = setup_script(n, nullptr).text();
  EXPECT_EQ(
      text.substr(0, text.find("\n\n")),
      "-- walbust setup: prepares the database for publication p and slot s.\n"
      "-- Idempotent: run it with psql -v ON_ERROR_STOP=1 (not in a single transaction), as often "
      "as needed.\n"
      "-- Not tailored: the database was not inspected. Replica identities are set to FULL for "
      "every\n"
      "-- table whose rules read previous values; the role in postgres.dsn needs REPLICATION and\n"
      "-- wal_level must be logical (walbust check --db verifies both).");
  EXPECT_NE(text.find("\n-- Lock timeout 10s.\n-- ALTER TABLE waits"), std::string::npos);
  EXPECT_EQ(text.find("REPLICA IDENTITY FULL"), std::string::npos);  // insert-only rules
  EXPECT_EQ(text.back(), '\n');
}

}  // namespace
}  // namespace walbust
