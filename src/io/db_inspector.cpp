#include "walbust/io/db_inspector.h"

#include <cstdlib>

namespace walbust {

namespace {

std::string text(const std::optional<std::string>& v) { return v.value_or(""); }
bool is_true(const std::optional<std::string>& v) { return v && *v == "t"; }
int to_int(const std::optional<std::string>& v) { return v ? std::atoi(v->c_str()) : 0; }

}  // namespace

DatabaseFacts DbInspector::inspect(const DatabaseNeeds& needs) {
  DatabaseFacts facts;
  read_server(facts);
  read_publication(needs, facts);
  for (const auto& t : needs.tables) facts.tables.push_back(read_table(t, needs));
  read_coverage(needs, facts);
  read_slot(needs, facts);
  return facts;
}

void DbInspector::read_server(DatabaseFacts& facts) {
  for (const auto& row :
       conn_.query("SELECT name, setting FROM pg_catalog.pg_settings "
                   "WHERE name IN ('wal_level', 'max_replication_slots', 'max_wal_senders')")) {
    const std::string name = text(row.at(0));
    if (name == "wal_level") facts.wal_level = text(row.at(1));
    if (name == "max_replication_slots") facts.max_replication_slots = to_int(row.at(1));
    if (name == "max_wal_senders") facts.max_wal_senders = to_int(row.at(1));
  }
  const auto rows = conn_.query(
      "SELECT pg_catalog.current_database(), current_user, r.rolreplication OR r.rolsuper, "
      "(SELECT pg_catalog.count(*) FROM pg_catalog.pg_replication_slots) "
      "FROM pg_catalog.pg_roles r WHERE r.rolname = current_user");
  if (rows.empty()) throw PgError("", "the current role is not in pg_roles");
  facts.database = text(rows[0].at(0));
  facts.role = text(rows[0].at(1));
  facts.role_can_replicate = is_true(rows[0].at(2));
  facts.replication_slots_used = to_int(rows[0].at(3));
}

void DbInspector::read_publication(const DatabaseNeeds& needs, DatabaseFacts& facts) {
  const std::string pub = conn_.quote_literal(needs.publication);
  const auto rows = conn_.query(
      "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot FROM "
      "pg_catalog.pg_publication "
      "WHERE pubname = " +
      pub);
  if (rows.empty()) return;
  auto& p = facts.publication;
  p.exists = true;
  p.all_tables = is_true(rows[0].at(0));
  p.insert = is_true(rows[0].at(1));
  p.update = is_true(rows[0].at(2));
  p.del = is_true(rows[0].at(3));
  p.truncate = is_true(rows[0].at(4));
  p.via_root = is_true(rows[0].at(5));
}

// Membership by name misses a partitioned table published through its partitions: the
// run-time binding decides, so check --db and run agree.
void DbInspector::read_coverage(const DatabaseNeeds& needs, DatabaseFacts& facts) {
  if (!facts.publication.exists) return;
  std::vector<std::pair<std::string, std::string>> names;
  for (const auto& t : needs.tables) names.emplace_back(t.schema, t.name);
  const CatalogSnapshot snapshot = read_catalog(needs.publication, names, {});
  for (auto& t : facts.tables) {
    const CatalogTable* c = snapshot.find(t.schema, t.name);
    if (c == nullptr) continue;
    std::string ancestor;
    const Coverage coverage = coverage_of(snapshot, *c, &ancestor);
    t.in_publication = coverage == Coverage::Direct || coverage == Coverage::Partitions;
    if (coverage == Coverage::UnderAncestor) t.published_under = ancestor;
  }
}

std::vector<std::string> DbInspector::column_list(const std::string& sql) {
  std::vector<std::string> out;
  for (const auto& row : conn_.query(sql)) out.push_back(text(row.at(0)));
  return out;
}

TableFacts DbInspector::read_table(const TableNeeds& needs, const DatabaseNeeds& all) {
  TableFacts t;
  t.schema = needs.schema;
  t.name = needs.name;
  // Ordinary and partitioned tables only: views and the like cannot be published.
  const auto rows = conn_.query(
      "SELECT c.oid, c.relreplident, c.relkind FROM pg_catalog.pg_class c "
      "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
      "WHERE n.nspname = " +
      conn_.quote_literal(needs.schema) + " AND c.relname = " + conn_.quote_literal(needs.name) +
      " AND c.relkind IN ('r', 'p')");
  if (rows.empty()) return t;
  t.exists = true;
  const std::string oid = text(rows[0].at(0));
  t.replica_identity = text(rows[0].at(1)).empty() ? 'd' : text(rows[0].at(1))[0];
  t.relkind = text(rows[0].at(2)).empty() ? 'r' : text(rows[0].at(2))[0];
  read_partitions(oid, t);
  t.columns = column_list("SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = " + oid +
                          " AND attnum > 0 AND NOT attisdropped ORDER BY attnum");
  const auto index_columns = [&](const std::string& flag) {
    return column_list(
        "SELECT a.attname FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) "
        "WHERE i.indrelid = " +
        oid + " AND i." + flag + " ORDER BY a.attnum");
  };
  t.primary_key = index_columns("indisprimary");
  switch (t.replica_identity) {
    case 'd':
      t.identity_columns = t.primary_key;
      break;
    case 'i':
      t.identity_columns = index_columns("indisreplident");
      break;
    case 'f':
      t.identity_columns = t.columns;
      break;
    default:
      break;
  }
  const auto pub = conn_.query(
      "SELECT rowfilter FROM pg_catalog.pg_publication_tables "
      "WHERE pubname = " +
      conn_.quote_literal(all.publication) + " AND schemaname = " +
      conn_.quote_literal(needs.schema) + " AND tablename = " + conn_.quote_literal(needs.name));
  if (!pub.empty()) {
    t.in_publication = true;
    t.row_filter = text(pub[0].at(0));
    t.published_columns = column_list(
        "SELECT pg_catalog.unnest(attnames) FROM pg_catalog.pg_publication_tables WHERE pubname "
        "= " +
        conn_.quote_literal(all.publication) + " AND schemaname = " +
        conn_.quote_literal(needs.schema) + " AND tablename = " + conn_.quote_literal(needs.name));
  }
  return t;
}

void DbInspector::read_partitions(const std::string& oid, TableFacts& t) {
  t.ancestors = column_list(
      "SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_partition_ancestors(" + oid +
      ") WITH ORDINALITY a(relid, i) JOIN pg_catalog.pg_class c ON c.oid = a.relid "
      "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid <> " +
      oid + " ORDER BY a.i");
  if (t.relkind != 'p') return;
  for (const auto& row : conn_.query(
           "SELECT n.nspname || '.' || c.relname, c.relreplident FROM "
           "pg_catalog.pg_partition_tree(" +
           oid +
           ") p JOIN pg_catalog.pg_class c ON c.oid = p.relid "
           "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE p.isleaf ORDER BY 1")) {
    const std::string identity = text(row.at(1));
    t.partitions.emplace_back(text(row.at(0)), identity.empty() ? 'd' : identity[0]);
  }
}

void DbInspector::read_slot(const DatabaseNeeds& needs, DatabaseFacts& facts) {
  const auto rows = conn_.query(
      "SELECT plugin, slot_type, database, wal_status, active, active_pid FROM "
      "pg_catalog.pg_replication_slots "
      "WHERE slot_name = " +
      conn_.quote_literal(needs.slot));
  if (rows.empty()) return;
  auto& s = facts.slot;
  s.exists = true;
  s.plugin = text(rows[0].at(0));
  s.slot_type = text(rows[0].at(1));
  s.database = text(rows[0].at(2));
  s.wal_status = text(rows[0].at(3));
  s.active = is_true(rows[0].at(4));
  s.active_pid = to_int(rows[0].at(5));
}

std::optional<std::vector<PublishedTable>> DbInspector::published_tables(
    const std::string& publication) {
  const std::string pub = conn_.quote_literal(publication);
  if (conn_.query("SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = " + pub).empty())
    return std::nullopt;
  // pg_partition_root: a publication without publish_via_partition_root lists partitions,
  // which a rule on their partitioned table covers.
  const auto rows = conn_.query(
      "SELECT t.schemaname, t.tablename, rn.nspname, rc.relname "
      "FROM pg_catalog.pg_publication_tables t "
      "JOIN pg_catalog.pg_namespace n ON n.nspname = t.schemaname "
      "JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename "
      "JOIN pg_catalog.pg_class rc ON rc.oid = COALESCE(pg_catalog.pg_partition_root(c.oid), "
      "c.oid) "
      "JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace "
      "WHERE t.pubname = " +
      pub + " ORDER BY 1, 2");
  std::vector<PublishedTable> out;
  for (const auto& row : rows)
    out.push_back({text(row.at(0)), text(row.at(1)), text(row.at(2)), text(row.at(3))});
  return out;
}

}  // namespace walbust

namespace walbust {

namespace {

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = text.find(sep, start);
    out.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

// The relations a snapshot needs: the publication's (published under their own OIDs, or
// members of it), the rule tables by name and the OIDs bound before, whatever their name.
std::string catalog_query(PgReplicationConnection& conn, const std::string& publication,
                          const std::vector<std::pair<std::string, std::string>>& tables,
                          const std::vector<std::uint32_t>& oids) {
  const std::string pub = conn.quote_literal(publication);
  std::string named = "SELECT c.oid FROM pg_catalog.pg_class c WHERE false";
  for (const auto& [schema, name] : tables) {
    named += " OR (c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = " +
             conn.quote_literal(schema) + ") AND c.relname = " + conn.quote_literal(name) + ")";
  }
  for (const std::uint32_t oid : oids) named += " OR c.oid = " + std::to_string(oid);
  return "WITH pub AS (SELECT c.oid FROM pg_catalog.pg_publication_tables t "
         "JOIN pg_catalog.pg_namespace n ON n.nspname = t.schemaname "
         "JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename "
         "WHERE t.pubname = " +
         pub +
         "), "
         "mem AS (SELECT pr.prrelid AS oid FROM pg_catalog.pg_publication_rel pr "
         "JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = " +
         pub +
         " UNION SELECT c.oid FROM pg_catalog.pg_publication_namespace pn "
         "JOIN pg_catalog.pg_publication p ON p.oid = pn.pnpubid "
         "JOIN pg_catalog.pg_class c ON c.relnamespace = pn.pnnspid WHERE p.pubname = " +
         pub +
         " UNION SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_publication p "
         "ON p.puballtables WHERE p.pubname = " +
         pub +
         "), "
         "named AS (" +
         named +
         "), "
         "wanted AS (SELECT oid FROM pub UNION SELECT oid FROM named) "
         "SELECT c.oid, n.nspname, c.relname, c.relkind, "
         "pg_catalog.array_to_string(ARRAY(SELECT a.relid::pg_catalog.oid FROM "
         "pg_catalog.pg_partition_ancestors(c.oid) WITH ORDINALITY a(relid, i) "
         "WHERE a.relid::pg_catalog.oid <> c.oid ORDER BY a.i), ','), "
         "CASE WHEN c.oid IN (SELECT oid FROM named) THEN pg_catalog.array_to_string(ARRAY("
         "SELECT a.attname FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND "
         "a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum), pg_catalog.chr(31)) END, "
         "c.oid IN (SELECT oid FROM pub), c.oid IN (SELECT oid FROM mem) "
         "FROM wanted w JOIN pg_catalog.pg_class c ON c.oid = w.oid "
         "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')";
}

}  // namespace

CatalogSnapshot DbInspector::read_catalog(
    const std::string& publication, const std::vector<std::pair<std::string, std::string>>& tables,
    const std::vector<std::uint32_t>& oids) {
  CatalogSnapshot s;
  s.publication = publication;
  const auto pub = conn_.query("SELECT pubviaroot FROM pg_catalog.pg_publication WHERE pubname = " +
                               conn_.quote_literal(publication));
  s.publication_exists = !pub.empty();
  s.via_root = !pub.empty() && is_true(pub[0].at(0));
  for (const auto& row : conn_.query(catalog_query(conn_, publication, tables, oids))) {
    CatalogTable t;
    t.oid = static_cast<std::uint32_t>(std::strtoul(text(row.at(0)).c_str(), nullptr, 10));
    t.schema = text(row.at(1));
    t.name = text(row.at(2));
    t.relkind = text(row.at(3)).empty() ? 'r' : text(row.at(3))[0];
    for (const auto& a : split(text(row.at(4)), ',')) {
      t.ancestors.push_back(static_cast<std::uint32_t>(std::strtoul(a.c_str(), nullptr, 10)));
    }
    t.columns = split(text(row.at(5)), '\x1f');
    t.published = is_true(row.at(6));
    t.member = is_true(row.at(7));
    s.tables.push_back(std::move(t));
  }
  return s;
}

}  // namespace walbust
