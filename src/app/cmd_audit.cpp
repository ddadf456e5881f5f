// `walbust audit`: which cached keys does no rule ever invalidate? SCANs one Redis target
// (read-only), groups its keys into families and compares them with every key the rules
// could produce; also compares the publication's tables with the rule tables.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>

#include "commands.h"
#include "config_loading.h"
#include "database_checks.h"
#include "exit_codes.h"
#include "walbust/core/audit_report.h"
#include "walbust/core/key_family.h"
#include "walbust/io/db_inspector.h"
#include "walbust/io/redis_key_scan.h"

namespace walbust {
namespace {

using Clock = std::chrono::steady_clock;

// The target to audit: the one named, or the only one. nullptr (after saying why) when
// the choice is ambiguous or the name unknown: a configuration error.
const RedisTarget* choose_target(const Config& config, const std::string& name) {
  std::string names;
  for (const auto& t : config.targets) {
    if (!name.empty() && t.name == name) return &t;
    names += (names.empty() ? "" : ", ") + t.name;
  }
  if (name.empty() && config.targets.size() == 1) return &config.targets.front();
  if (name.empty()) {
    std::fprintf(stderr,
                 "walbust audit: the configuration has %zu Redis targets (%s): name one "
                 "with --target\n",
                 config.targets.size(), names.c_str());
  } else {
    std::fprintf(stderr, "walbust audit: --target %s: no such target (configured: %s)\n",
                 name.c_str(), names.c_str());
  }
  return nullptr;
}

// Publication tables without rules and rule tables outside the publication. When the
// database cannot be read, context.database_note says why (one line) and the Redis part
// goes on.
std::vector<TableProblem> read_tables(const LoadedConfig& loaded, AuditContext& context) {
  try {
    auto conn = connect_for_inspection(loaded.config);
    DbInspector inspector(*conn);
    const auto published = inspector.published_tables(loaded.config.postgres.publication);
    context.publication_missing = !published;
    return compare_publication(loaded.rules.table_needs(),
                               published ? *published : std::vector<PublishedTable>{});
  } catch (const std::exception& e) {
    context.database_note = one_line(e.what());
    std::fprintf(stderr, "walbust audit: database not checked: %s\n",
                 context.database_note.c_str());
    return {};
  }
}

// A progress line every few seconds, only for a person watching a terminal.
class Progress {
 public:
  Progress() : enabled_(isatty(STDERR_FILENO) == 1), next_(Clock::now() + kEvery) {}
  void update(const FamilyAggregator& agg) {
    if (!enabled_ || Clock::now() < next_) return;
    next_ = Clock::now() + kEvery;
    std::fprintf(stderr, "\rwalbust audit: %llu keys scanned, %zu families...",
                 static_cast<unsigned long long>(agg.scanned()), agg.family_count());
    shown_ = true;
  }
  ~Progress() {
    if (shown_) std::fputs("\r\033[K", stderr);
  }

 private:
  static constexpr std::chrono::seconds kEvery{2};
  bool enabled_;
  bool shown_ = false;
  Clock::time_point next_;
};

struct ScanResult {
  bool sample_reached = false;
};

// Streams pages into the aggregate until the keyspace or the sample is exhausted.
ScanResult scan_keys(RedisKeyScan& scan, const CoverageIndex& index, std::uint64_t sample,
                     FamilyAggregator& agg) {
  ScanResult result;
  Progress progress;
  std::vector<ScannedKey> page;
  std::vector<std::uint32_t> rules;
  while (agg.scanned() < sample) {
    if (!scan.next_page(static_cast<std::size_t>(sample - agg.scanned()), page)) return result;
    for (const auto& k : page) {
      index.covering_rules(k.key, rules);
      agg.add(k.key, k.has_ttl, rules);
    }
    progress.update(agg);
  }
  result.sample_reached = !scan.exhausted();
  return result;
}

void print_report(const AuditOptions& options, const std::vector<FamilyStats>& families,
                  const std::vector<TableProblem>& tables, const AuditSummary& summary,
                  const AuditContext& context, const RuleSet& rules) {
  if (options.format == "json") {
    std::string out;
    for (const auto& f : families) out += format_family_json(f, rules) + "\n";
    for (const auto& t : tables) out += format_table_json(t) + "\n";
    out += format_audit_summary_json(summary) + "\n";
    std::fputs(out.c_str(), stdout);
  } else {
    std::fputs(format_audit_text(families, tables, summary, context, rules).c_str(), stdout);
  }
  std::fflush(stdout);
}

}  // namespace

int audit_command(const AuditOptions& options) {
  auto loaded = load_config_and_rules(options.config_path);
  if (!loaded) return kExitUsage;
  const RedisTarget* target = choose_target(loaded->config, options.target);
  if (target == nullptr) return kExitUsage;

  AuditContext context;
  context.target = target->name;
  context.sample = options.sample;
  context.publication = loaded->config.postgres.publication;
  const std::vector<TableProblem> tables = read_tables(*loaded, context);

  const CoverageIndex index = CoverageIndex::from_rules(loaded->rules, target->name);
  FamilyAggregator agg;
  try {
    RedisKeyScan scan(target->settings, read_password_file(target->settings.password_file));
    scan.connect();
    context.where = scan.describe();
    context.sample_reached = scan_keys(scan, index, options.sample, agg).sample_reached;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "walbust audit: redis target %s: %s\n", target->name.c_str(), e.what());
    return kExitFailure;
  }
  const std::vector<FamilyStats> families = agg.sorted();
  const AuditSummary summary = summarize(families, agg.scanned());
  print_report(options, families, tables, summary, context, loaded->rules);
  return summary.uncovered == 0 ? kExitOk : kExitFailure;
}

}  // namespace walbust
