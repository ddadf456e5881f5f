#pragma once
// Reads the DatabaseFacts that `check --db` and `setup` judge, with plain catalog queries
// on an ordinary SQL connection (no replication privilege needed to inspect).
#include <optional>
#include <string>
#include <vector>

#include "walbust/audit_report.h"
#include "walbust/db_check.h"
#include "walbust/pg_replication.h"

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

 private:
  void read_server(DatabaseFacts& facts);
  void read_publication(const DatabaseNeeds& needs, DatabaseFacts& facts);
  [[nodiscard]] TableFacts read_table(const TableNeeds& needs, const DatabaseNeeds& all);
  void read_slot(const DatabaseNeeds& needs, DatabaseFacts& facts);
  [[nodiscard]] std::vector<std::string> column_list(const std::string& sql);

  PgReplicationConnection& conn_;
};

}  // namespace walbust
