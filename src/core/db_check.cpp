#include "walbust/core/db_check.h"

#include <algorithm>
#include <set>

#include "walbust/core/sql_quote.h"

namespace walbust {

namespace {

constexpr const char* kRestart = " -- then restart PostgreSQL";
constexpr const char* kOldRowReason =
    "rules compare old and new rows (changed, ignore_changes, when) or render {old.x}";

std::string join(const std::vector<std::string>& items, std::string_view sep = ", ") {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

std::string qualified(const std::string& schema, const std::string& name) {
  return schema + "." + name;
}

bool contains(const std::vector<std::string>& items, const std::string& item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

// "rule post-pages at rules/blog.yaml:16" or "rules a at f:1, b at f:9": the rules on a table.
// RuleSet reports needs per table, so a missing column names every rule of its table.
std::string rules_on(const DatabaseNeeds& needs, const std::string& schema,
                     const std::string& table) {
  std::vector<std::string> names;
  for (const auto& r : needs.rules) {
    if (r.schema == schema && r.table == table)
      names.push_back(r.name + " at " + r.file + ":" + std::to_string(r.line));
  }
  if (names.empty()) return "no rule";
  return (names.size() == 1 ? "rule " : "rules ") + join(names);
}

std::set<Op> ops_needed(const std::vector<TableNeeds>& tables) {
  std::set<Op> ops;
  for (const auto& t : tables) ops.insert(t.ops.begin(), t.ops.end());
  return ops;
}

std::string ops_text(const std::set<Op>& ops) {
  std::vector<std::string> names;
  for (const Op op : {Op::Insert, Op::Update, Op::Delete, Op::Truncate}) {
    if (ops.contains(op)) names.emplace_back(op_name(op));
  }
  return join(names);
}

std::set<Op> published_ops(const PublicationFacts& p) {
  std::set<Op> ops;
  if (p.insert) ops.insert(Op::Insert);
  if (p.update) ops.insert(Op::Update);
  if (p.del) ops.insert(Op::Delete);
  if (p.truncate) ops.insert(Op::Truncate);
  return ops;
}

std::string identity_text(const TableFacts& t) {
  switch (t.replica_identity) {
    case 'f':
      return "full";
    case 'n':
      return "nothing";
    case 'i':
      return t.identity_columns.empty() ? "index (none found)"
                                        : "index (" + join(t.identity_columns) + ")";
    default:
      return t.identity_columns.empty() ? "default, without a primary key"
                                        : "default (primary key " + join(t.identity_columns) + ")";
  }
}

bool sees_old(const TableNeeds& needs) {
  return needs.ops.contains(Op::Update) || needs.ops.contains(Op::Delete);
}

// Dropping and re-adding in one transaction resets a column list or row filter without a
// moment in which the table is unpublished.
std::string republish_fix(const std::string& pub, const std::string& table_sql) {
  return "BEGIN; ALTER PUBLICATION " + pub + " DROP TABLE " + table_sql + "; ALTER PUBLICATION " +
         pub + " ADD TABLE " + table_sql + "; COMMIT;";
}

class Checker {
 public:
  Checker(const DatabaseNeeds& needs, const DatabaseFacts& facts) : needs_(needs), facts_(facts) {}

  std::vector<Finding> run() {
    server();
    role();
    publication();
    for (const auto& t : needs_.tables) table(t);
    slot();
    return std::move(out_);
  }

 private:
  void ok(std::string message) { out_.push_back(Finding{true, std::move(message), {}}); }
  void fail(std::string message, std::string fix) {
    out_.push_back(Finding{false, std::move(message), std::move(fix)});
  }

  void server() {
    if (facts_.wal_level == "logical") {
      ok("wal_level is logical");
    } else {
      fail("wal_level is " + facts_.wal_level + ", logical decoding needs logical",
           std::string("ALTER SYSTEM SET wal_level = logical;") + kRestart);
    }
    setting("max_replication_slots", facts_.max_replication_slots, "no replication slot can exist");
    setting("max_wal_senders", facts_.max_wal_senders, "no replication connection is accepted");
  }

  void setting(const std::string& name, int value, const std::string& consequence) {
    if (value > 0) {
      ok(name + " is " + std::to_string(value));
    } else {
      fail(name + " is " + std::to_string(value) + ": " + consequence,
           "ALTER SYSTEM SET " + name + " = 10;" + kRestart);
    }
  }

  void role() {
    if (facts_.role_can_replicate) {
      ok("role " + facts_.role + " may replicate");
    } else {
      fail("role " + facts_.role +
               " may not replicate (it needs the REPLICATION attribute or superuser)",
           "ALTER ROLE " + sql_identifier(facts_.role) + " REPLICATION;");
    }
  }

  void publication() {
    const std::string& name = needs_.publication;
    const std::string pub = sql_identifier(name);
    const auto& p = facts_.publication;
    const std::set<Op> wanted = ops_needed(needs_.tables);
    if (!p.exists) {
      std::vector<std::string> tables;
      for (const auto& t : needs_.tables) {
        const TableFacts* f = facts_.table(t.schema, t.name);
        if (f != nullptr && f->exists) tables.push_back(sql_qualified(t.schema, t.name));
      }
      std::string fix = "CREATE PUBLICATION " + pub;
      if (!tables.empty()) fix += " FOR TABLE " + join(tables);
      fix += " WITH (publish = " + sql_literal(ops_text(wanted));
      if (wants_publish_via_root(needs_, facts_)) fix += ", publish_via_partition_root = true";
      fix += ");";
      fail("publication " + name + " does not exist", fix);
      return;
    }
    ok(p.all_tables ? "publication " + name + " exists (FOR ALL TABLES)"
                    : "publication " + name + " exists");
    const std::set<Op> have = published_ops(p);
    std::set<Op> missing;
    std::set_difference(wanted.begin(), wanted.end(), have.begin(), have.end(),
                        std::inserter(missing, missing.end()));
    if (missing.empty()) {
      ok("publication " + name + " publishes " + ops_text(wanted) + ", which the rules listen to");
    } else {
      std::set<Op> all = have;
      all.insert(wanted.begin(), wanted.end());
      fail("publication " + name + " does not publish " + ops_text(missing) +
               ", which the rules listen to",
           "ALTER PUBLICATION " + pub + " SET (publish = " + sql_literal(ops_text(all)) + ");");
    }
  }

  void table(const TableNeeds& needs) {
    const std::string name = qualified(needs.schema, needs.name);
    const std::string table_sql = sql_qualified(needs.schema, needs.name);
    const TableFacts* f = facts_.table(needs.schema, needs.name);
    if (f == nullptr || !f->exists) {
      fail("table " + name + " does not exist (named by " +
               rules_on(needs_, needs.schema, needs.name) + ")",
           "-- create the table, or correct the rule's table:");
      return;
    }
    ok("table " + name + " exists");

    std::size_t missing_columns = 0;
    for (const auto& col : needs.columns) {
      if (contains(f->columns, col)) continue;
      ++missing_columns;
      fail("column " + col + " of table " + name + " does not exist (named by " +
               rules_on(needs_, needs.schema, needs.name) + ")",
           "-- correct the rule, or ALTER TABLE " + table_sql + " ADD COLUMN " +
               sql_identifier(col) + " ...;");
    }
    if (missing_columns == 0) {
      std::vector<std::string> cols(needs.columns.begin(), needs.columns.end());
      ok("table " + name + " has every column the rules name (" + join(cols) + ")");
    }

    publication_membership(needs, *f, table_sql);
    replica_identity(needs, *f, name, table_sql);
  }

  void publication_membership(const TableNeeds& needs, const TableFacts& f,
                              const std::string& table_sql) {
    const auto& p = facts_.publication;
    if (!p.exists) return;  // the CREATE PUBLICATION fix lists the tables
    const std::string name = qualified(needs.schema, needs.name);
    const std::string pub = sql_identifier(needs_.publication);
    if (!f.published_under.empty()) {
      fail("publication " + needs_.publication + " publishes the changes of " + name +
               " under its partition root " + f.published_under +
               " (publish_via_partition_root = true), where rules on " + name +
               " cannot tell its rows apart (named by " +
               rules_on(needs_, needs.schema, needs.name) + ")",
           "-- put these rules on " + f.published_under + ", or: ALTER PUBLICATION " + pub +
               " SET (publish_via_partition_root = false);");
      return;
    }
    if (!f.in_publication) {
      fail("publication " + needs_.publication + " does not contain table " + name,
           "ALTER PUBLICATION " + pub + " ADD TABLE " + table_sql + ";");
      return;
    }
    if (f.relkind == 'p') {
      ok("publication " + needs_.publication + " contains partitioned table " + name +
         (p.via_root ? " with publish_via_partition_root = true: changes of every partition "
                       "arrive under " +
                           name
                     : " with publish_via_partition_root = false: changes arrive under each "
                       "partition's name, which walbust maps back to " +
                           name));
    } else {
      ok("publication " + needs_.publication + " contains table " + name);
    }
    if (!f.published_columns.empty()) {
      std::vector<std::string> unpublished;
      for (const auto& col : needs.columns) {
        if (contains(f.columns, col) && !contains(f.published_columns, col))
          unpublished.push_back(col);
      }
      if (!unpublished.empty()) {
        fail("publication " + needs_.publication + " has a column list for table " + name +
                 " without columns the rules name: " + join(unpublished),
             republish_fix(pub, table_sql));
      }
    }
    if (!f.row_filter.empty()) {
      fail("publication " + needs_.publication + " filters the rows of table " + name + " (WHERE " +
               f.row_filter + "): changes it filters out invalidate nothing",
           republish_fix(pub, table_sql));
    }
  }

  void replica_identity(const TableNeeds& needs, const TableFacts& f, const std::string& name,
                        const std::string& table_sql) {
    const auto& p = facts_.publication;
    // A publication walbust creates publishes what the rules listen to.
    const std::set<Op> published = p.exists ? published_ops(p) : ops_needed(needs_.tables);
    const bool publishes_ud = published.contains(Op::Update) || published.contains(Op::Delete);
    if (f.relkind == 'p') {
      partition_identities(needs, f, name, publishes_ud);
      return;
    }
    if (auto reason = replica_identity_full_reason(needs, f, publishes_ud)) {
      fail("table " + name + " has replica identity " + identity_text(f) +
               " but needs FULL: " + *reason,
           "ALTER TABLE " + table_sql + " REPLICA IDENTITY FULL;");
    } else if (f.replica_identity == 'f') {
      ok("table " + name + " has REPLICA IDENTITY FULL");
    } else if (needs.old_value_columns.empty() || !sees_old(needs)) {
      ok("table " + name + ": the rules use no previous values (replica identity " +
         identity_text(f) + ")");
    } else {
      ok("table " + name + ": replica identity " + identity_text(f) +
         " carries the previous values the rules use");
    }
  }

  // A partitioned table holds no rows: every leaf partition sends its own previous rows,
  // and a partition does not take the parent's replica identity, not even when created.
  void partition_identities(const TableNeeds& needs, const TableFacts& f, const std::string& name,
                            bool publishes_ud) {
    TableFacts judged = f;
    judged.replica_identity = 'd';
    judged.identity_columns = f.primary_key;
    const auto reason = replica_identity_full_reason(needs, judged, publishes_ud);
    if (!reason) {
      ok("partitioned table " + name + ": the rules use no previous values its key lacks");
      return;
    }
    std::vector<std::string> lacking;
    std::string fix;
    for (const auto& [partition, identity] : f.partitions) {
      if (identity == 'f') continue;
      lacking.push_back(partition);
      const auto dot = partition.find('.');
      fix += (fix.empty() ? "" : " ") + std::string("ALTER TABLE ") +
             sql_qualified(partition.substr(0, dot), partition.substr(dot + 1)) +
             " REPLICA IDENTITY FULL;";
    }
    if (lacking.empty()) {
      ok("every partition of " + name +
         " has REPLICA IDENTITY FULL (partitions created later "
         "need it too)");
      return;
    }
    fail("partitions " + join(lacking) + " of " + name + " lack REPLICA IDENTITY FULL: " + *reason,
         fix);
  }

  void slot() {
    if (!facts_.slot.exists) {
      missing_slot();
    } else {
      existing_slot();
    }
  }

  // No slot of that name: fine when run creates it, a gap when walbust streamed from it.
  void missing_slot() {
    const std::string& name = needs_.slot;
    const auto& streamed = needs_.streamed;
    if (streamed && streamed->database == facts_.database) {
      fail("slot " + name + " is missing although walbust streamed from it up to " +
               format_lsn(streamed->acknowledged_lsn) +
               ": changes were missed and caches may be stale",
           "-- set on_gap: flush_rules (or flushdb) and restart walbust, which flushes the keys "
           "and creates the "
           "slot; or flush the caches yourself, then delete " +
               streamed->state_path);
    } else if (needs_.create_slot) {
      ok("slot " + name + " does not exist yet: walbust run creates it (create_slot: true)");
    } else {
      fail("slot " + name + " does not exist and create_slot is false",
           "SELECT pg_catalog.pg_create_logical_replication_slot(" + sql_literal(name) +
               ", 'pgoutput');");
    }
    if (facts_.max_replication_slots > 0 &&
        facts_.replication_slots_used >= facts_.max_replication_slots) {
      fail("no free replication slot for " + name + " (" +
               std::to_string(facts_.replication_slots_used) + " of " +
               std::to_string(facts_.max_replication_slots) + " in use)",
           "ALTER SYSTEM SET max_replication_slots = " +
               std::to_string(facts_.max_replication_slots + 10) + ";" + kRestart +
               ", or drop an unused slot");
    }
  }

  // The slot exists: its kind, plugin and database, then whether it still has its WAL.
  void existing_slot() {
    const std::string& name = needs_.slot;
    const auto& s = facts_.slot;
    const std::string drop =
        "SELECT pg_catalog.pg_drop_replication_slot(" + sql_literal(name) + ");";
    if (s.slot_type != "logical") {
      fail("slot " + name + " is a " + s.slot_type + " slot, walbust needs a logical one",
           drop + " -- if nothing else uses it; or set postgres.slot to another name");
    } else if (s.plugin != "pgoutput") {
      fail("slot " + name + " uses plugin " + s.plugin + ", walbust needs pgoutput",
           drop + " -- if nothing else uses it; or set postgres.slot to another name");
    } else {
      ok("slot " + name + " is a logical pgoutput slot" +
         (s.active ? " (in use by pid " + std::to_string(s.active_pid) + ")" : ""));
    }
    if (s.slot_type == "logical" && s.database != facts_.database) {
      fail(
          "slot " + name + " belongs to database " + s.database + ", not " + facts_.database,
          "-- set postgres.slot to another name, or connect to " + s.database + " and run " + drop);
    }
    slot_wal(drop);
  }

  // A lost slot missed changes; an unreserved one is about to.
  void slot_wal(const std::string& drop) {
    const std::string& name = needs_.slot;
    const auto& s = facts_.slot;
    if (s.wal_status == "lost") {
      fail("slot " + name +
               " is lost (wal_status lost): PostgreSQL removed WAL it still needed, so changes "
               "were missed and "
               "caches may be stale",
           "-- set on_gap: flush_rules (or flushdb) and restart walbust, which flushes the keys "
           "and recreates the "
           "slot; or flush the caches yourself, then " +
               drop);
    } else if (s.wal_status == "unreserved") {
      ok("slot " + name +
         " still has its WAL (wal_status unreserved: beyond max_wal_size, lost at the next "
         "checkpoint unless "
         "walbust catches up)");
    } else {
      ok("slot " + name + " has its WAL (wal_status " +
         (s.wal_status.empty() ? "unknown" : s.wal_status) + ")");
    }
  }

  const DatabaseNeeds& needs_;
  const DatabaseFacts& facts_;
  std::vector<Finding> out_;
};

}  // namespace

const TableFacts* DatabaseFacts::table(const std::string& schema, const std::string& name) const {
  for (const auto& t : tables) {
    if (t.schema == schema && t.name == name) return &t;
  }
  return nullptr;
}

std::vector<Finding> check_database(const DatabaseNeeds& needs, const DatabaseFacts& facts) {
  return Checker(needs, facts).run();
}

std::string format_finding(const Finding& finding) {
  if (finding.ok) return "ok    " + finding.message;
  return "FAIL  " + finding.message + " ; fix: " + finding.fix;
}

std::size_t count_problems(const std::vector<Finding>& findings) {
  return static_cast<std::size_t>(
      std::count_if(findings.begin(), findings.end(), [](const Finding& f) { return !f.ok; }));
}

std::string format_summary(const std::vector<Finding>& findings) {
  const std::size_t problems = count_problems(findings);
  return std::to_string(findings.size()) + (findings.size() == 1 ? " check, " : " checks, ") +
         std::to_string(problems) + (problems == 1 ? " problem" : " problems");
}

std::optional<std::string> replica_identity_full_reason(const TableNeeds& needs,
                                                        const TableFacts& table,
                                                        bool publishes_update_or_delete) {
  if (table.replica_identity == 'f') return std::nullopt;
  if (needs.needs_old_row) return kOldRowReason;
  std::vector<std::string> uncovered;
  if (sees_old(needs)) {
    for (const auto& col : needs.old_value_columns) {
      // A column that does not exist is reported on its own; FULL would not help it.
      if (!contains(table.identity_columns, col) && contains(table.columns, col))
        uncovered.push_back(col);
    }
  }
  if (!uncovered.empty()) {
    return "rules render previous values of " + join(uncovered) + " on update or delete";
  }
  if (table.identity_columns.empty() && (sees_old(needs) || publishes_update_or_delete)) {
    return "it has no replica identity, so PostgreSQL rejects UPDATE and DELETE on it while the "
           "publication "
           "publishes them";
  }
  return std::nullopt;
}

std::optional<std::string> replica_identity_full_reason(const TableNeeds& needs) {
  if (needs.needs_old_row) return kOldRowReason;
  if (sees_old(needs) && !needs.old_value_columns.empty()) {
    std::vector<std::string> cols(needs.old_value_columns.begin(), needs.old_value_columns.end());
    return "rules render previous values of " + join(cols) +
           " on update or delete (not needed for replica identity columns; the database was not "
           "inspected)";
  }
  return std::nullopt;
}

bool wants_publish_via_root(const DatabaseNeeds& needs, const DatabaseFacts& facts) {
  bool partitioned = false;
  for (const auto& t : needs.tables) {
    const TableFacts* f = facts.table(t.schema, t.name);
    if (f == nullptr || !f->exists) continue;
    if (f->relkind == 'p') partitioned = true;
    for (const auto& a : f->ancestors) {
      for (const auto& other : needs.tables) {
        if (a == qualified(other.schema, other.name)) return false;
      }
    }
  }
  return partitioned;
}

std::string publish_option(const std::vector<TableNeeds>& tables) {
  return ops_text(ops_needed(tables));
}

std::vector<Finding> check_replicas(const std::vector<ReplicaFacts>& replicas) {
  std::vector<Finding> out;
  for (const auto& r : replicas) {
    const std::string who = "replica " + r.name;
    if (!r.reachable) {
      out.push_back(Finding{false, who + " is unreachable: " + r.error,
                            "-- check replicas.dsns, the replica's pg_hba.conf and the network"});
    } else if (!r.in_recovery) {
      out.push_back(Finding{false, who + " is not in recovery: it is a primary, not a read replica",
                            "-- list only streaming standbys in replicas.dsns"});
    } else if (!r.can_read_replay) {
      out.push_back(Finding{
          false,
          who + ": the role may not call pg_last_wal_replay_lsn()" +
              (r.error.empty() ? "" : " (" + r.error + ")"),
          "GRANT EXECUTE ON FUNCTION pg_catalog.pg_last_wal_replay_lsn() TO <role>;  -- on the "
          "primary; it reaches the replica by replication"});
    } else {
      out.push_back(
          Finding{true,
                  who + " is a standby in recovery, replayed up to " +
                      (r.replay_lsn ? format_lsn(*r.replay_lsn) : std::string("nothing yet")),
                  {}});
    }
  }
  return out;
}

}  // namespace walbust
