#pragma once
// Reads the DatabaseFacts that `check --db` and `setup` judge, with plain catalog queries
// on an ordinary SQL connection (no replication privilege needed to inspect).
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "walbust/core/audit_report.h"
#include "walbust/core/db_check.h"
#include "walbust/core/rule_binding.h"
#include "walbust/io/pg_replication.h"

namespace walbust {

class DbInspector {
 public:
  // `conn` must be connected with replication = false.
  explicit DbInspector(PgReplicationConnection& conn) : conn_(conn) {}

  // Facts for the tables, publication and slot `needs` names. Throws PgError.
  [[nodiscard]] DatabaseFacts inspect(const DatabaseNeeds& needs);

  // Every table the publication publishes, each with its partition root (audit); nullopt
  // when the publication does not exist. Throws PgError.
  [[nodiscard]] std::optional<std::vector<PublishedTable>> published_tables(
      const std::string& publication);
  // What RuleBinding binds rules with: the tables named (schema, table), the OIDs bound
  // before, and every relation the publication publishes, each with its partition
  // ancestors. Two queries, whatever the number of tables. Throws PgError.
  [[nodiscard]] CatalogSnapshot read_catalog(
      const std::string& publication,
      const std::vector<std::pair<std::string, std::string>>& tables,
      const std::vector<std::uint32_t>& oids);

 private:
  void read_server(DatabaseFacts& facts);
  void read_publication(const DatabaseNeeds& needs, DatabaseFacts& facts);
  [[nodiscard]] TableFacts read_table(const TableNeeds& needs, const DatabaseNeeds& all);
  void read_partitions(const std::string& oid, TableFacts& t);
  void read_coverage(const DatabaseNeeds& needs, DatabaseFacts& facts);
  void read_slot(const DatabaseNeeds& needs, DatabaseFacts& facts);
  [[nodiscard]] std::vector<std::string> column_list(const std::string& sql);

  PgReplicationConnection& conn_;
};

}  // namespace walbust
