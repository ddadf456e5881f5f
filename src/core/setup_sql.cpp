#include "walbust/core/setup_sql.h"

#include <set>

#include "walbust/core/sql_quote.h"

namespace walbust {

namespace {

std::string do_block(const std::string& body) { return "DO " + sql_dollar_quoted(body) + ";"; }

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

class ScriptBuilder {
 public:
  ScriptBuilder(const DatabaseNeeds& needs, const DatabaseFacts* facts)
      : needs_(needs), facts_(facts) {}

  SetupScript build() {
    header();
    session();
    if (facts_ != nullptr) {
      server();
      role();
    }
    publication();
    publish_ops();
    tables();
    replica_identities();
    slot();
    return std::move(script_);
  }

 private:
  // The first comment line is a one-sentence summary: apply prints it.
  void add(std::vector<std::string> comment, std::string sql, bool in_place = false,
           bool annotate = true) {
    if (in_place && annotate) comment.emplace_back("(already in place)");
    script_.statements.push_back(
        SetupStatement{std::move(comment), std::move(sql), in_place, false});
  }

  void header() {
    auto& h = script_.header;
    h.emplace_back("walbust setup: prepares the database for publication " + needs_.publication +
                   " and slot " + needs_.slot + ".");
    h.emplace_back(
        "Idempotent: run it with psql -v ON_ERROR_STOP=1 (not in a single transaction), as often "
        "as needed.");
    if (facts_ != nullptr) {
      h.emplace_back("Tailored to database " + facts_->database + " as seen by role " +
                     facts_->role + ".");
    } else {
      h.emplace_back(
          "Not tailored: the database was not inspected. Replica identities are set to FULL for "
          "every");
      h.emplace_back(
          "table whose rules read previous values; the role in postgres.dsn needs REPLICATION and");
      h.emplace_back("wal_level must be logical (walbust check --db verifies both).");
    }
  }

  void session() {
    // ALTER TABLE ... REPLICA IDENTITY waits for an ACCESS EXCLUSIVE lock, and every query
    // on the table queues behind the waiter: give up instead of stalling the application.
    script_.statements.push_back(SetupStatement{
        {"Lock timeout 10s.",
         "ALTER TABLE waits for an exclusive lock and every query on the table queues behind",
         "it: give up rather than stall the application behind a long transaction."},
        "SET lock_timeout = '10s';",
        false,
        true});
  }

  void server() {
    if (facts_->wal_level != "logical") {
      add({"wal_level is logical (now " + facts_->wal_level + ").",
           "Logical decoding needs it. Superuser only; takes effect after a PostgreSQL restart."},
          "ALTER SYSTEM SET wal_level = logical;");
    }
    for (const auto& [name, value] :
         {std::pair<std::string, int>{"max_replication_slots", facts_->max_replication_slots},
          std::pair<std::string, int>{"max_wal_senders", facts_->max_wal_senders}}) {
      if (value <= 0) {
        add({name + " is 10 (now 0).",
             "walbust needs one. Superuser only; takes effect after a PostgreSQL restart."},
            "ALTER SYSTEM SET " + name + " = 10;");
      }
    }
  }

  void role() {
    if (facts_->role_can_replicate) return;
    add({"Role " + facts_->role + " may replicate.",
         "It streams the changes, which needs the REPLICATION attribute. Run as a superuser."},
        "ALTER ROLE " + sql_identifier(facts_->role) + " REPLICATION;");
  }

  // The rule tables as an oid[] resolved when the script runs (NULL for a missing one).
  std::string rule_table_oids() const {
    std::vector<std::string> items;
    for (const auto& t : needs_.tables) {
      items.push_back("pg_catalog.to_regclass(" + sql_literal(sql_qualified(t.schema, t.name)) +
                      ")::pg_catalog.oid");
    }
    return "ARRAY[" + join(items) + "]::pg_catalog.oid[]";
  }

  // Decided when the script runs, as wants_publish_via_root() decides for check --db: a
  // rule table is partitioned and none is a partition of another.
  void publication() {
    const std::string lit = sql_literal(needs_.publication);
    const std::string body =
        "DECLARE\n  rule_tables pg_catalog.oid[] := " + rule_table_oids() +
        ";\nBEGIN\n  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = " +
        lit +
        ") THEN\n    EXECUTE pg_catalog.format('CREATE PUBLICATION %I WITH (publish = %L, "
        "publish_via_partition_root = %s)',\n      " +
        lit + ", " + sql_literal(publish_option(needs_.tables)) +
        ",\n      CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = ANY "
        "(rule_tables) AND c.relkind = 'p')\n      AND NOT EXISTS (SELECT 1 FROM "
        "pg_catalog.unnest(rule_tables) r(oid), pg_catalog.pg_partition_ancestors(r.oid) a\n"
        "        WHERE a.relid::pg_catalog.oid <> r.oid AND a.relid::pg_catalog.oid = ANY "
        "(rule_tables))\n      THEN 'true' ELSE 'false' END);\n  END IF;\nEND";
    add({"Publication " + needs_.publication + ".",
         "Created before the slot: decoding looks it up in the snapshot of the WAL it reads.",
         "With publish_via_partition_root = true when a rule table is partitioned (and none is a",
         "partition of another): every partition's changes, also of partitions created later,",
         "then arrive under the partitioned table's name. An existing publication is left as it",
         "is: walbust follows either form."},
        do_block(body), facts_ != nullptr && facts_->publication.exists);
  }

  void publish_ops() {
    std::set<Op> wanted;
    for (const auto& t : needs_.tables) wanted.insert(t.ops.begin(), t.ops.end());
    struct OpColumn {
      Op op;
      const char* column;
      bool PublicationFacts::*flag;
    };
    const OpColumn columns[] = {{Op::Insert, "pubinsert", &PublicationFacts::insert},
                                {Op::Update, "pubupdate", &PublicationFacts::update},
                                {Op::Delete, "pubdelete", &PublicationFacts::del},
                                {Op::Truncate, "pubtruncate", &PublicationFacts::truncate}};
    std::vector<std::string> lacking;  // conditions true when a wanted op is not published
    std::vector<std::string> values;   // wanted ops, plus whatever the publication already has
    bool in_place = true;
    for (const auto& c : columns) {
      const std::string name(op_name(c.op));
      if (wanted.contains(c.op)) {
        lacking.push_back("NOT p." + std::string(c.column));
        values.push_back("'" + name + "'");
        if (facts_ != nullptr && facts_->publication.exists && !(facts_->publication.*c.flag))
          in_place = false;

      } else {
        values.push_back("CASE WHEN p." + std::string(c.column) + " THEN '" + name + "' END");
      }
    }
    if (lacking.empty()) return;
    std::string cond;
    for (const auto& l : lacking) cond += (cond.empty() ? "" : " OR ") + l;
    const std::string body =
        "DECLARE\n  p pg_catalog.pg_publication%ROWTYPE;\nBEGIN\n  SELECT * INTO STRICT p FROM "
        "pg_catalog.pg_publication "
        "WHERE pubname = " +
        sql_literal(needs_.publication) + ";\n  IF " + cond +
        " THEN\n    EXECUTE pg_catalog.format('ALTER PUBLICATION %I SET (publish = %L)', "
        "p.pubname,\n      "
        "pg_catalog.concat_ws(', ', " +
        join(values) + "));\n  END IF;\nEND";
    // A publication created just above already publishes them: nothing to report.
    const bool created = facts_ != nullptr && !facts_->publication.exists;
    add({"Publication " + needs_.publication + " publishes " + publish_option(needs_.tables) + ".",
         "An existing publication gets the missing operations; those it already publishes are "
         "kept."},
        do_block(body), facts_ != nullptr && in_place, !created);
  }

  // With facts, only tables that exist (ADD TABLE of a missing one fails the whole script).
  bool exists(const TableNeeds& t) const {
    if (facts_ == nullptr) return true;
    const TableFacts* f = facts_->table(t.schema, t.name);
    return f != nullptr && f->exists;
  }

  void tables() {
    std::string body = "BEGIN\n";
    bool in_place = facts_ != nullptr;
    std::vector<std::string> missing;
    std::size_t count = 0;
    for (const auto& t : needs_.tables) {
      if (!exists(t)) {
        missing.push_back(t.schema + "." + t.name);
        continue;
      }
      ++count;
      if (facts_ != nullptr && !facts_->table(t.schema, t.name)->in_publication) in_place = false;
      // Membership, not pg_publication_tables: that lists a partitioned table's partitions
      // instead of the table unless the publication publishes via the partition root.
      body +=
          "  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel r JOIN "
          "pg_catalog.pg_publication p ON p.oid = r.prpubid WHERE p.pubname = " +
          sql_literal(needs_.publication) +
          " AND r.prrelid = " + sql_literal(sql_qualified(t.schema, t.name)) +
          "::pg_catalog.regclass)\n     AND NOT (SELECT puballtables FROM "
          "pg_catalog.pg_publication WHERE pubname = " +
          sql_literal(needs_.publication) + ") THEN\n    ALTER PUBLICATION " +
          sql_identifier(needs_.publication) + " ADD TABLE " + sql_qualified(t.schema, t.name) +
          ";\n  END IF;\n";
    }
    body += "END";
    if (!missing.empty()) {
      add({"Not added to the publication, the table does not exist: " + join(missing) + ".",
           "walbust check --db names the rules."},
          "");
    }
    if (count == 0) return;
    add({"Publication " + needs_.publication + " contains the tables the rules watch.",
         "PostgreSQL 15 rejects ADD TABLE for a table already in it, hence the checks."},
        do_block(body), in_place);
  }

  void replica_identities() {
    const bool publishes_ud = [&] {
      if (facts_ != nullptr && facts_->publication.exists) {
        return facts_->publication.update || facts_->publication.del;
      }
      const std::string ops = publish_option(needs_.tables);
      return ops.find("update") != std::string::npos || ops.find("delete") != std::string::npos;
    }();
    for (const auto& t : needs_.tables) {
      if (!exists(t)) continue;
      const TableFacts* f = facts_ != nullptr ? facts_->table(t.schema, t.name) : nullptr;
      std::optional<std::string> reason;
      bool in_place = false;
      if (f != nullptr) {
        // Already FULL: judge it as if it were the default, so the script keeps the statement
        // while the rules need it and stays the same before and after it ran.
        TableFacts judged = *f;
        if (f->replica_identity == 'f' || f->relkind == 'p') {
          judged.replica_identity = 'd';
          judged.identity_columns = f->primary_key;
          in_place = true;
        }
        // A partitioned table's rows live in its partitions, each with its own identity.
        if (f->relkind == 'p') {
          for (const auto& [partition, identity] : f->partitions) in_place &= identity == 'f';
        }
        reason = replica_identity_full_reason(t, judged, publishes_ud);
      } else {
        reason = replica_identity_full_reason(t);
      }
      if (!reason) continue;
      const std::string table = sql_qualified(t.schema, t.name);
      // A partition does not take its parent's replica identity, and it is the partition
      // that sends the previous row: when the table is (or may be) partitioned, every one.
      const bool partitioned = f == nullptr || f->relkind == 'p';
      const std::string regclass = sql_literal(table) + "::pg_catalog.regclass";
      std::string body = partitioned ? "DECLARE\n  r record;\n" : "";
      body += "BEGIN\n  IF (SELECT relreplident FROM pg_catalog.pg_class WHERE oid = " + regclass +
              ") <> 'f' THEN\n    ALTER TABLE " + table + " REPLICA IDENTITY FULL;\n  END IF;\n";
      if (partitioned) {
        body += "  FOR r IN SELECT p.relid FROM pg_catalog.pg_partition_tree(" + regclass +
                ") p\n    JOIN pg_catalog.pg_class c ON c.oid = p.relid WHERE p.level > 0 AND "
                "c.relkind IN ('r', 'p') AND c.relreplident <> 'f'\n  LOOP\n"
                "    EXECUTE pg_catalog.format('ALTER TABLE %s REPLICA IDENTITY FULL', r.relid);\n"
                "  END LOOP;\n";
      }
      body += "END";
      std::vector<std::string> comment = {
          "Table " + t.schema + "." + t.name + " has REPLICA IDENTITY FULL.",
          "Because " + *reason + "."};
      if (partitioned) comment.emplace_back("A partitioned table's partitions get it too.");
      add(std::move(comment), do_block(body), in_place);
    }
  }

  void slot() {
    const std::string lit = sql_literal(needs_.slot);
    if (facts_ != nullptr && facts_->wal_level != "logical") {
      add({"Slot " + needs_.slot + " is not created yet: wal_level must be logical first.",
           "Restart PostgreSQL, then run walbust setup again."},
          "");
      return;
    }
    add({"Slot " + needs_.slot + " exists (logical, pgoutput).",
         "A statement of its own after the publication is committed, outside any transaction that "
         "wrote",
         "(PostgreSQL refuses otherwise). It retains WAL from now on: start walbust soon."},
        "SELECT pg_catalog.pg_create_logical_replication_slot(" + lit +
            ", 'pgoutput')\n WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE "
            "slot_name = " +
            lit + ");",
        facts_ != nullptr && facts_->slot.exists);
  }

  const DatabaseNeeds& needs_;
  const DatabaseFacts* facts_;
  SetupScript script_;
};

}  // namespace

std::string SetupScript::text() const {
  std::string out;
  for (const auto& line : header) out += "-- " + line + "\n";
  for (const auto& s : statements) {
    out += "\n";
    for (const auto& line : s.comment) out += "-- " + line + "\n";
    if (!s.sql.empty()) out += s.sql + "\n";
  }
  return out;
}

SetupScript setup_script(const DatabaseNeeds& needs, const DatabaseFacts* facts) {
  return ScriptBuilder(needs, facts).build();
}

}  // namespace walbust
