#pragma once
// What `walbust audit` prints (README "Adopting walbust"): one JSON object per line, or text a
// person reads at a glance (uncovered families first, largest first, with their share of
// the keys scanned). Also the comparison of the publication's tables with the rule
// tables. Pure: the command gathers the facts.
#include <cstdint>
#include <string>
#include <vector>

#include "walbust/core/key_family.h"
#include "walbust/core/rules.h"

namespace walbust {

// A table of the publication (and, for a partition, the partitioned table it belongs to).
struct PublishedTable {
  std::string schema;
  std::string name;
  std::string root_schema;  // equal to schema/name unless a partition
  std::string root_name;
};

struct TableProblem {
  std::string table;    // "schema.name"
  std::string problem;  // "no rule" | "not in publication"
  friend bool operator==(const TableProblem&, const TableProblem&) = default;
};

// Publication tables that no rule reads (a partition counts as read when a rule names its
// partitioned table) and rule tables the publication lacks, sorted by table.
[[nodiscard]] std::vector<TableProblem> compare_publication(
    const std::vector<TableNeeds>& rule_tables, const std::vector<PublishedTable>& published);

struct AuditSummary {
  std::uint64_t scanned = 0;
  std::uint64_t families = 0;
  std::uint64_t uncovered = 0;
  std::uint64_t uncovered_keys = 0;
};

[[nodiscard]] AuditSummary summarize(const std::vector<FamilyStats>& families,
                                     std::uint64_t scanned);

// JSON lines (no trailing newline). Bytes that are not UTF-8 are replaced (U+FFFD).
[[nodiscard]] std::string format_family_json(const FamilyStats& family, const RuleSet& rules);
[[nodiscard]] std::string format_table_json(const TableProblem& problem);
[[nodiscard]] std::string format_audit_summary_json(const AuditSummary& summary);

// What the text report says about where the keys came from and about the database.
struct AuditContext {
  std::string target;  // target name
  std::string where;   // "127.0.0.1:6379/0" or "cluster a:1,b:2 (3 masters)"
  std::uint64_t sample = 0;
  bool sample_reached = false;  // the scan stopped at --sample before the end
  std::string publication;
  std::string database_note;  // "" when the database was read, else why not
  bool publication_missing = false;
};

// The whole text report, ending with a newline.
[[nodiscard]] std::string format_audit_text(const std::vector<FamilyStats>& families,
                                            const std::vector<TableProblem>& tables,
                                            const AuditSummary& summary,
                                            const AuditContext& context, const RuleSet& rules);

}  // namespace walbust
