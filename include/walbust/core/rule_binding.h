#pragma once
// Binds rules to tables by identity (OID), not by name, so that schema changes never
// silence a rule without a word (see docs in README, "Schema changes and migrations").
//
// Contract:
// - A rule table (the `table:` of a rule) is resolved by name from a CatalogSnapshot and
//   then followed by OID: a rename keeps the binding (SchemaChange::Rename), a table
//   dropped and recreated under the rule's name is bound anew (SchemaChange::Recreate).
// - A change on relation OID X is matched against the rules of every rule table that is X
//   or one of X's partition ancestors: partitions are covered whether the publication
//   publishes them under their own OIDs or under the root's.
// - Every rule that cannot match has exactly one reason in unbound(): the publication or
//   the table is missing, the table is not published (or only under an ancestor, where its
//   rows cannot be told apart), or a column the rule names is gone (from the catalog or
//   the stream's latest Relation message).
// - OIDs once routed stay routed after they leave the catalog: the stream may still hold
//   changes of a dropped table, and they belonged to the rule's table.
// Pure: the snapshot is read by io (DbInspector::read_catalog), Relation messages come
// from ChangeStream.
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "walbust/core/change.h"
#include "walbust/core/rules.h"

namespace walbust {

struct CatalogTable {
  std::uint32_t oid = 0;
  std::string schema;
  std::string name;
  char relkind = 'r';                    // 'r' ordinary, 'p' partitioned
  std::vector<std::uint32_t> ancestors;  // partition parent first, root last; empty if none
  std::vector<std::string> columns;      // attnum order, dropped columns left out
  bool published = false;  // listed in pg_publication_tables: changes arrive under this OID
  // A member of the publication itself (pg_publication_rel, its schema, or FOR ALL
  // TABLES): a partitioned member without partitions yet covers the ones to come.
  bool member = false;

  [[nodiscard]] std::string qualified_name() const { return schema + "." + name; }
};

struct CatalogSnapshot {
  std::string publication;
  bool publication_exists = false;
  bool via_root = false;  // pg_publication.pubviaroot
  // The rule tables found by name, the OIDs bound before (whatever they are called now)
  // and every relation the publication publishes.
  std::vector<CatalogTable> tables;

  [[nodiscard]] const CatalogTable* find(std::uint32_t oid) const;
  [[nodiscard]] const CatalogTable* find(std::string_view schema, std::string_view name) const;
};

// How the publication carries a table's changes.
enum class Coverage : std::uint8_t {
  Direct,         // under the table's own OID (an ordinary table, or a partitioned
                  // table with publish_via_partition_root)
  Partitions,     // under its partitions' OIDs (publish_via_partition_root = false)
  UnderAncestor,  // under a published ancestor's OID: its rows cannot be told apart
  NotPublished,
};
// How `snapshot` publishes `table` (which must be in it); `ancestor` receives the
// ancestor's name for UnderAncestor.
[[nodiscard]] Coverage coverage_of(const CatalogSnapshot& snapshot, const CatalogTable& table,
                                   std::string* ancestor = nullptr);

struct SchemaChange {
  enum class Kind : std::uint8_t { Rename, Recreate };
  Kind kind = Kind::Rename;
  std::string rule_table;  // schema.table as the rules name it
  std::string old_name;    // qualified
  std::string new_name;
  std::uint32_t old_oid = 0;
  std::uint32_t new_oid = 0;
  std::vector<std::string> rules;  // the rules on the table
};
[[nodiscard]] std::string_view schema_change_kind(SchemaChange::Kind kind);  // "rename", ...
// One log line: what changed and what it means for the rules.
[[nodiscard]] std::string describe(const SchemaChange& change);

struct UnboundRule {
  std::uint32_t rule = 0;  // index into the RuleSet
  std::string reason;

  friend bool operator==(const UnboundRule&, const UnboundRule&) = default;
};

class RuleBinding {
 public:
  // Binds nothing until update(); rules may be replaced with rebind().
  explicit RuleBinding(const RuleSet& rules);
  // After a reload: the same tables keep their OIDs, new ones bind at the next update().
  void rebind(const RuleSet& rules);

  // Applies a fresh catalog snapshot; returns the renames and recreations it revealed.
  std::vector<SchemaChange> update(const CatalogSnapshot& snapshot);

  // A Relation message. Returns the rename it reveals, if any (same OID, new name), and
  // records the columns the stream now sends. Sets *needs_catalog when the OID is unknown
  // or renamed: the caller should take a fresh snapshot before the relation's changes.
  std::optional<SchemaChange> observe(const Relation& relation, bool* needs_catalog);

  [[nodiscard]] bool knows(std::uint32_t oid) const { return routes_.contains(oid); }

  // Plans a change with the rules of every rule table its relation is routed to. An OID
  // never seen in a snapshot falls back to matching by the relation's name. The changes of
  // one Truncate message (same LSN) plan each rule table once: truncating a partitioned
  // table names every partition, and each would repeat the same pattern scans.
  void plan(const RuleSet& rules, const Change& change, std::vector<Action>& out,
            std::vector<RenderFailure>* failures = nullptr,
            std::vector<PublishedKey>* published = nullptr);

  // Rules that cannot match now, by rule index, one reason each.
  [[nodiscard]] std::vector<UnboundRule> unbound() const;
  // OIDs currently bound (for the next snapshot's query).
  [[nodiscard]] std::vector<std::uint32_t> bound_oids() const;
  // Rule tables, as (schema, table), for the next snapshot's query.
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> rule_tables() const;

 private:
  struct Table {
    std::string schema;
    std::string name;
    std::vector<std::uint32_t> rules;
    std::uint32_t oid = 0;             // 0: not found
    std::string current_name;          // qualified, as last seen for oid
    std::string reason;                // table-level reason; "" when bound
    std::vector<std::string> columns;  // as last seen (snapshot or Relation message)
    bool columns_known = false;
  };

  [[nodiscard]] std::string qualified(const Table& t) const { return t.schema + "." + t.name; }
  std::optional<SchemaChange> follow(Table& t, const CatalogSnapshot& snapshot);
  void judge(Table& t, const CatalogSnapshot& snapshot);
  void route(const CatalogSnapshot& snapshot);
  Table& table_for(const RuleInfo& info);
  [[nodiscard]] SchemaChange change_of(const Table& t, SchemaChange::Kind kind) const;

  std::vector<Table> tables_;
  std::vector<std::string> rule_names_;
  std::vector<std::set<std::string>> rule_columns_;
  std::vector<std::size_t> rule_table_;  // rule index -> tables_ index
  // relation OID -> the rule tables (schema, table) its changes are matched against.
  std::unordered_map<std::uint32_t, std::vector<std::pair<std::string, std::string>>> routes_;
  Lsn truncate_lsn_ = kInvalidLsn;  // the Truncate message the set below belongs to
  std::set<std::pair<std::string, std::string>> truncated_;
};

}  // namespace walbust
