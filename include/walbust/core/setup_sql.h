#pragma once
// `walbust setup` (README "Command line"): the SQL that prepares a database for the rules. Every
// statement is idempotent, so the script can be piped into `psql -v ON_ERROR_STOP=1` any
// number of times. With facts from the database it is tailored (replica identity only
// where the current one falls short, server settings and role fixes when they are needed);
// without, it is conservative and says so.
#include <string>
#include <vector>

#include "walbust/core/db_check.h"

namespace walbust {

struct SetupStatement {
  std::vector<std::string> comment;  // why, printed as "-- line" above the statement
  std::string sql;                   // one statement ending with ';' ("" for a note only)
  bool in_place = false;  // the facts say running it would change nothing (apply skips it)
  bool session = false;   // a session setting: always run, never reported as a change
};

struct SetupScript {
  std::vector<std::string> header;  // comment lines at the top
  std::vector<SetupStatement> statements;

  [[nodiscard]] std::string text() const;
};

// `facts` may be null: the database could not be inspected.
[[nodiscard]] SetupScript setup_script(const DatabaseNeeds& needs, const DatabaseFacts* facts);

}  // namespace walbust
