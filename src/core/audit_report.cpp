#include "walbust/core/audit_report.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "walbust/core/key_text.h"

namespace walbust {
namespace {

using json = nlohmann::ordered_json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string share(std::uint64_t part, std::uint64_t whole) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", whole == 0 ? 0.0 : 100.0 * part / whole);
  return buf;
}

std::string rule_names(const FamilyStats& f, const RuleSet& rules) {
  std::string out;
  for (const std::uint32_t r : f.rules) out += (out.empty() ? "" : ", ") + rules.rule(r).name;
  return out;
}

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

// One row per family: counts right-aligned, the family padded so examples and rules line up.
void family_rows(std::string& out, const std::vector<const FamilyStats*>& rows,
                 std::uint64_t scanned, const RuleSet& rules, bool covered) {
  std::size_t width = 6;
  for (const auto* f : rows) width = std::max(width, escape_key_text(f->family).size());
  width = std::min<std::size_t>(width, 60);
  char head[128];
  std::snprintf(head, sizeof head, "  %10s  %6s  %10s  ", "KEYS", "SHARE", "NO TTL");
  out += head + pad("FAMILY", width) + (covered ? "  RULES\n" : "  EXAMPLE\n");
  for (const auto* f : rows) {
    char nums[128];
    std::snprintf(nums, sizeof nums, "  %10llu  %6s  %10llu  ",
                  static_cast<unsigned long long>(f->keys), share(f->keys, scanned).c_str(),
                  static_cast<unsigned long long>(f->no_ttl));
    const std::string family =
        f->overflow ? "(other families, over the cap)" : escape_key_text(f->family);
    out += nums + pad(family, width) + "  " +
           (covered ? rule_names(*f, rules) : escape_key_text(f->example)) + "\n";
  }
}

void table_lines(std::string& out, const std::vector<TableProblem>& tables,
                 const AuditContext& context) {
  out += "\nDatabase (publication " + context.publication + "):\n";
  if (!context.database_note.empty()) {
    out += "  not checked: " + context.database_note + "\n";
    return;
  }
  if (context.publication_missing) {
    out += "  the publication does not exist: walbust setup prints the SQL that creates it\n";
  }
  if (tables.empty()) out += "  every published table has a rule, every rule table is published\n";
  for (const auto& t : tables) {
    out += "  " + t.table + ": " +
           (t.problem == "no rule" ? "published, but no rule reads it"
                                   : "a rule reads it, but it is not in the publication") +
           "\n";
  }
}

}  // namespace

std::vector<TableProblem> compare_publication(const std::vector<TableNeeds>& rule_tables,
                                              const std::vector<PublishedTable>& published) {
  std::set<std::pair<std::string, std::string>> ruled;
  for (const auto& t : rule_tables) ruled.emplace(t.schema, t.name);
  std::set<std::pair<std::string, std::string>> in_publication;
  std::vector<TableProblem> out;
  for (const auto& p : published) {
    in_publication.emplace(p.schema, p.name);
    in_publication.emplace(p.root_schema, p.root_name);
    if (!ruled.count({p.schema, p.name}) && !ruled.count({p.root_schema, p.root_name}))
      out.push_back({p.schema + "." + p.name, "no rule"});
  }
  for (const auto& [schema, name] : ruled) {
    if (!in_publication.count({schema, name}))
      out.push_back({schema + "." + name, "not in publication"});
  }
  std::sort(out.begin(), out.end(), [](const TableProblem& a, const TableProblem& b) {
    return std::tie(a.table, a.problem) < std::tie(b.table, b.problem);
  });
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

AuditSummary summarize(const std::vector<FamilyStats>& families, std::uint64_t scanned) {
  AuditSummary s;
  s.scanned = scanned;
  s.families = families.size();
  for (const auto& f : families) {
    if (f.covered) continue;
    ++s.uncovered;
    s.uncovered_keys += f.keys;
  }
  return s;
}

std::string format_family_json(const FamilyStats& f, const RuleSet& rules) {
  json names = json::array();
  for (const std::uint32_t r : f.rules) names.push_back(rules.rule(r).name);
  json j = {{"type", "family"},     {"family", f.family},   {"keys", f.keys}, {"no_ttl", f.no_ttl},
            {"covered", f.covered}, {"example", f.example}, {"rules", names}};
  return dump(j);
}

std::string format_table_json(const TableProblem& p) {
  return dump(json{{"type", "table"}, {"table", p.table}, {"problem", p.problem}});
}

std::string format_audit_summary_json(const AuditSummary& s) {
  return dump(json{{"type", "summary"},
                   {"scanned", s.scanned},
                   {"families", s.families},
                   {"uncovered", s.uncovered},
                   {"uncovered_keys", s.uncovered_keys}});
}

std::string format_audit_text(const std::vector<FamilyStats>& families,
                              const std::vector<TableProblem>& tables, const AuditSummary& summary,
                              const AuditContext& context, const RuleSet& rules) {
  std::string out = "walbust audit: target " + context.target + " (" + context.where + "), " +
                    std::to_string(summary.scanned) + " keys scanned";
  if (context.sample_reached)
    out += " (a sample: the scan stopped at --sample " + std::to_string(context.sample) + ")";
  out += "\n";
  std::vector<const FamilyStats*> uncovered, covered;
  for (const auto& f : families) (f.covered ? covered : uncovered).push_back(&f);
  if (!uncovered.empty()) {
    out += "\nNOT INVALIDATED by any rule: " + std::to_string(summary.uncovered) + " of " +
           std::to_string(summary.families) + " families, " +
           std::to_string(summary.uncovered_keys) + " keys (" +
           share(summary.uncovered_keys, summary.scanned) +
           "); keys without TTL stay stale until evicted:\n";
    family_rows(out, uncovered, summary.scanned, rules, false);
  }
  if (!covered.empty()) {
    out += "\nCovered families:\n";
    family_rows(out, covered, summary.scanned, rules, true);
  }
  table_lines(out, tables, context);
  out += "\n";
  if (summary.uncovered == 0) {
    out += "Every family is covered by a rule.\n";
  } else {
    out += std::to_string(summary.uncovered) +
           (summary.uncovered == 1 ? " family is" : " families are") +
           " not covered: write rules for them (walbust test checks the keys they render), "
           "then run walbust audit again.\n";
  }
  return out;
}

}  // namespace walbust
