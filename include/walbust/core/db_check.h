#pragma once
// `walbust check --db` (README "Command line"): compares what the rules need from the database with
// facts read from it, and turns every difference into a finding with the SQL that fixes
// it. Pure: the facts are read by DbInspector (io), so every rule here is unit-tested.
#include <optional>
#include <string>
#include <vector>

#include "walbust/core/lsn.h"
#include "walbust/core/rules.h"

namespace walbust {

// What the configuration asks of the database.
struct DatabaseNeeds {
  std::vector<TableNeeds> tables;  // RuleSet::table_needs()
  std::vector<RuleInfo> rules;     // every rule, to name them in findings
  std::string publication;
  std::string slot;
  bool create_slot = true;
  // From walbust's state file, when it names this slot: a missing slot is then a gap
  // (README "Guarantees and failure modes"), not a first start.
  struct Streamed {
    std::string database;
    Lsn acknowledged_lsn = kInvalidLsn;
    std::string state_path;
  };
  std::optional<Streamed> streamed;
};

struct TableFacts {
  std::string schema;
  std::string name;
  bool exists = false;               // an ordinary or partitioned table
  std::vector<std::string> columns;  // attnum > 0, not dropped, in attnum order
  char replica_identity = 'd';       // pg_class.relreplident: d, n, f, i
  // Columns the old row carries without FULL: the primary key for 'd', the index for 'i',
  // none for 'n' (and for 'd' without a primary key). Every column for 'f'.
  std::vector<std::string> identity_columns;
  std::vector<std::string> primary_key;  // whatever the identity is
  char relkind = 'r';                    // 'p': partitioned (its partitions hold the rows)
  // Its changes reach the stream: under its own name, or (partitioned, without
  // publish_via_partition_root) under its partitions' names, which walbust maps back.
  bool in_publication = false;
  // Not in_publication because an ancestor is published with publish_via_partition_root:
  // that ancestor (schema.name), under which its rows arrive indistinguishable.
  std::string published_under;
  std::vector<std::string> ancestors;  // partition ancestors, parent first (schema.name)
  // Leaf partitions (schema.name, relreplident): each sends its own previous rows.
  std::vector<std::pair<std::string, char>> partitions;
  // From pg_publication_tables (PostgreSQL 15): the published columns (all of them when
  // the table has no column list) and the row filter, "" when none.
  std::vector<std::string> published_columns;
  std::string row_filter;
};

struct PublicationFacts {
  bool exists = false;
  bool all_tables = false;
  bool insert = false;
  bool update = false;
  bool del = false;
  bool truncate = false;
  bool via_root = false;  // publish_via_partition_root
};

struct SlotFacts {
  bool exists = false;
  std::string plugin;
  std::string slot_type;  // logical | physical
  std::string database;
  std::string wal_status;  // reserved | extended | unreserved | lost | ""
  bool active = false;
  int active_pid = 0;
};

struct DatabaseFacts {
  std::string database;  // current_database()
  std::string wal_level;
  int max_replication_slots = 0;
  int max_wal_senders = 0;
  int replication_slots_used = 0;
  std::string role;                 // current_user
  bool role_can_replicate = false;  // rolreplication or rolsuper
  PublicationFacts publication;
  std::vector<TableFacts> tables;  // one per DatabaseNeeds::tables entry, same order
  SlotFacts slot;

  [[nodiscard]] const TableFacts* table(const std::string& schema, const std::string& name) const;
};

struct Finding {
  bool ok = true;
  std::string message;
  std::string fix;  // SQL (one line, may end with a -- comment); empty when ok

  friend bool operator==(const Finding&, const Finding&) = default;
};

// What `check --db` and the start of `run` learn from a read replica.
struct ReplicaFacts {
  std::string name;  // host:port, never the password
  bool reachable = false;
  std::string error;  // why not reachable, or why the position cannot be read
  bool in_recovery = false;
  bool can_read_replay = false;  // the role may execute pg_last_wal_replay_lsn()
  std::optional<Lsn> replay_lsn;
};

// One finding per replica: reachable, a standby in recovery, its position readable.
[[nodiscard]] std::vector<Finding> check_replicas(const std::vector<ReplicaFacts>& replicas);

// Every check, in a stable order: server settings, role, publication, tables, slot.
[[nodiscard]] std::vector<Finding> check_database(const DatabaseNeeds& needs,
                                                  const DatabaseFacts& facts);

// "ok    MESSAGE" or "FAIL  MESSAGE ; fix: SQL" (no newline).
[[nodiscard]] std::string format_finding(const Finding& finding);
// "N checks, N problems"
[[nodiscard]] std::string format_summary(const std::vector<Finding>& findings);
[[nodiscard]] std::size_t count_problems(const std::vector<Finding>& findings);

// Why a table needs REPLICA IDENTITY FULL given its current identity, or nullopt when it
// does not: rules use previous values the identity does not carry, or the table has no
// replica identity while its updates or deletes are published (PostgreSQL then rejects
// UPDATE and DELETE on it). Shared with setup so both agree.
[[nodiscard]] std::optional<std::string> replica_identity_full_reason(
    const TableNeeds& needs, const TableFacts& table, bool publishes_update_or_delete);
// The same decision without facts: rules read any previous value at all.
[[nodiscard]] std::optional<std::string> replica_identity_full_reason(const TableNeeds& needs);

// Whether a publication created for these tables should publish via the partition root:
// a rule table is partitioned (its partitions then need no catalog lookup), and no rule
// table is a partition of another (whose rows would then arrive under the ancestor).
[[nodiscard]] bool wants_publish_via_root(const DatabaseNeeds& needs, const DatabaseFacts& facts);

// The operations the rules listen to, as a publish option value ("insert, update").
[[nodiscard]] std::string publish_option(const std::vector<TableNeeds>& tables);

}  // namespace walbust
