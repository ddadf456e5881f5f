#pragma once
// Keeps the rules bound to their tables while `run` or `dry-run` streams (RuleBinding
// holds the logic). Reads the catalog on its own SQL connection: at start, after a
// reload, at least every kCatalogInterval, and before the changes of a relation the
// stream announces under an unknown OID or a new name. Makes every outcome visible: a
// rename or recreation is a warning and walbust_schema_changes_total{kind}; a rule that
// cannot match is one error line per rule and reason, walbust_rule_unbound{rule} = 1, and
// a line in /healthz and STATUS= (unbound_lines()), until it is fixed.
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "walbust/metrics.h"
#include "walbust/pg_replication.h"
#include "walbust/rule_binding.h"
#include "walbust/rules.h"

namespace walbust {

class TableBinder {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kCatalogInterval{10};

  // `registry` may be null (dry-run: logs only).
  TableBinder(std::string conninfo, std::string password, std::string publication,
              std::shared_ptr<const RuleSet> rules, MetricsRegistry* registry);

  // After a reload: rebinds and reads the catalog at once.
  void set_rules(std::shared_ptr<const RuleSet> rules);
  // Reads the catalog now. False (logged once per outage) when it cannot: the binding
  // stays as it was.
  bool refresh();
  // Every kCatalogInterval.
  void tick(Clock::time_point now);
  // When tick() next reads the catalog: a loop waiting for data wakes up for it.
  [[nodiscard]] Clock::time_point next_refresh() const { return next_refresh_; }
  // Before the relation's changes are planned.
  void on_relation(const Relation& relation);

  void plan(const Change& change, std::vector<Action>& out, std::vector<RenderFailure>* failures,
            std::vector<PublishedKey>* published = nullptr) {
    binding_.plan(*rules_, change, out, failures, published);
  }
  // "rule NAME: REASON", one per unbound rule; thread-safe (the health check calls it).
  [[nodiscard]] std::vector<std::string> unbound_lines() const;

 private:
  void report(const std::vector<SchemaChange>& changes);
  void publish_unbound();

  PgReplicationConnection conn_;
  std::string publication_;
  std::shared_ptr<const RuleSet> rules_;
  RuleBinding binding_;
  MetricsRegistry* registry_;
  bool failing_ = false;
  bool read_once_ = false;
  Clock::time_point next_refresh_{};
  std::map<std::string, std::string> reported_;  // rule -> reason already logged
  mutable std::mutex mu_;
  std::vector<std::string> lines_;  // guarded by mu_
};

}  // namespace walbust
