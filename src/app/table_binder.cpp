#include "table_binder.h"

#include <spdlog/spdlog.h>

#include <set>

#include "walbust/db_inspector.h"

namespace walbust {

namespace {

constexpr const char* kUnboundHelp =
    "1 while a rule cannot match (its table is missing, unpublished, or lacks a column it "
    "names), else 0";
constexpr const char* kSchemaChangesHelp =
    "Renames and recreations of rule tables noticed while running, by kind";

}  // namespace

TableBinder::TableBinder(std::string conninfo, std::string password, std::string publication,
                         std::shared_ptr<const RuleSet> rules, MetricsRegistry* registry)
    : conn_(std::move(conninfo), std::move(password), /*replication=*/false),
      publication_(std::move(publication)),
      rules_(std::move(rules)),
      binding_(*rules_),
      registry_(registry) {
  if (registry_ != nullptr) {
    registry_->declare_counter("walbust_schema_changes_total", kSchemaChangesHelp);
    for (std::uint32_t i = 0; i < rules_->size(); ++i) {
      registry_->gauge("walbust_rule_unbound", kUnboundHelp, {{"rule", rules_->rule(i).name}});
    }
  }
}

void TableBinder::set_rules(std::shared_ptr<const RuleSet> rules) {
  rules_ = std::move(rules);
  binding_.rebind(*rules_);
  (void)refresh();
}

bool TableBinder::refresh() {
  next_refresh_ = Clock::now() + kCatalogInterval;
  try {
    if (!conn_.connected()) conn_.connect();
    DbInspector inspector(conn_);
    const auto started = Clock::now();
    const CatalogSnapshot snapshot =
        inspector.read_catalog(publication_, binding_.rule_tables(), binding_.bound_oids());
    report(binding_.update(snapshot));
    spdlog::debug(
        "catalog read and rules bound in {} ms ({} relations)",
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count(),
        snapshot.tables.size());
    read_once_ = true;
    if (failing_) spdlog::info("postgres: reading the catalog again to bind rules to tables");
    failing_ = false;
  } catch (const PgError& e) {
    if (!failing_) {
      spdlog::warn(
          "postgres: cannot read the catalog to bind rules to tables: {}; the binding "
          "stays as it was, retrying every {} s",
          e.what(), kCatalogInterval.count());
    }
    failing_ = true;
    conn_.close();
  }
  publish_unbound();
  return !failing_;
}

void TableBinder::tick(Clock::time_point now) {
  if (now >= next_refresh_) (void)refresh();
}

void TableBinder::on_relation(const Relation& relation) {
  bool needs_catalog = false;
  (void)binding_.observe(relation, &needs_catalog);
  if (needs_catalog && !refresh() && !binding_.knows(relation.oid)) {
    spdlog::warn("table {} (OID {}): matched by its name until the catalog can be read",
                 relation.qualified_name(), relation.oid);
  }
  if (!needs_catalog) publish_unbound();  // the columns the stream sends may have changed
}

void TableBinder::report(const std::vector<SchemaChange>& changes) {
  for (const auto& c : changes) {
    spdlog::warn("schema change: {}", describe(c));
    if (registry_ != nullptr) {
      registry_
          ->counter("walbust_schema_changes_total", kSchemaChangesHelp,
                    {{"kind", std::string(schema_change_kind(c.kind))}})
          .inc();
    }
  }
}

void TableBinder::publish_unbound() {
  // Before the catalog was ever read, nothing is known to be wrong (and the stream, which
  // needs the same server, says what is).
  if (!read_once_) return;
  std::map<std::string, std::string> now;
  std::vector<std::string> lines;
  for (const auto& u : binding_.unbound()) {
    const RuleInfo& info = rules_->rule(u.rule);
    now[info.name] = u.reason;
    lines.push_back("rule " + info.name + ": " + u.reason);
    if (const auto it = reported_.find(info.name);
        it == reported_.end() || it->second != u.reason) {
      spdlog::error(
          "rule {} ({}:{}) cannot match: {}; its keys are not invalidated until this is "
          "fixed",
          info.name, info.file, info.line, u.reason);
    }
  }
  std::set<std::string> names;
  for (std::uint32_t i = 0; i < rules_->size(); ++i) names.insert(rules_->rule(i).name);
  for (const auto& [name, reason] : reported_) {
    // A rule a reload removed does not match "again"; its gauge still goes back to 0.
    if (!now.contains(name) && names.contains(name)) {
      spdlog::info("rule {} matches again (was: {})", name, reason);
    }
  }
  if (registry_ != nullptr) {
    // Rules that left with a reload go back to 0: a series cannot be removed.
    for (const auto& [name, reason] : reported_) {
      if (!now.contains(name))
        registry_->gauge("walbust_rule_unbound", kUnboundHelp, {{"rule", name}}).set(0);
    }
    for (const auto& [name, reason] : now) {
      registry_->gauge("walbust_rule_unbound", kUnboundHelp, {{"rule", name}}).set(1);
    }
  }
  reported_ = std::move(now);
  std::lock_guard lock(mu_);
  lines_ = std::move(lines);
}

std::vector<std::string> TableBinder::unbound_lines() const {
  std::lock_guard lock(mu_);
  return lines_;
}

}  // namespace walbust
