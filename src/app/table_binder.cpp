#include "table_binder.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <set>

#include "signals.h"
#include "walbust/io/db_inspector.h"

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
  // A read stuck on a dead network gives up after this, so shutdown never waits long.
  conn_.set_io_timeout(std::chrono::milliseconds(kWaitLimit));
  if (registry_ != nullptr) {
    registry_->declare_counter("walbust_schema_changes_total", kSchemaChangesHelp);
    for (std::uint32_t i = 0; i < rules_->size(); ++i) {
      registry_->gauge("walbust_rule_unbound", kUnboundHelp, {{"rule", rules_->rule(i).name}});
    }
  }
  reader_ = std::thread([this] { reader_loop(); });
}

TableBinder::~TableBinder() {
  {
    std::lock_guard lock(reader_mu_);
    stop_ = true;
    // A query blocked on a silent network would never return: shutting the socket down
    // makes it fail at once, so stopping never hangs.
    if (socket_ >= 0) ::shutdown(socket_, SHUT_RDWR);
  }
  reader_cv_.notify_all();
  reader_.join();
}

void TableBinder::set_rules(std::shared_ptr<const RuleSet> rules) {
  rules_ = std::move(rules);
  binding_.rebind(*rules_);
  (void)refresh();
}

std::uint64_t TableBinder::post_request() {
  Request r{0, binding_.rule_tables(), binding_.bound_oids()};
  {
    std::lock_guard lock(reader_mu_);
    r.id = current_id_ = ++next_id_;
    request_ = std::move(r);
  }
  in_flight_ = true;
  posted_ = Clock::now();
  next_refresh_ = posted_ + kCatalogInterval;
  reader_cv_.notify_all();
  return current_id_;
}

bool TableBinder::refresh() {
  const std::uint64_t id = post_request();
  std::optional<Outcome> outcome;
  {
    std::unique_lock lock(reader_mu_);
    reader_cv_.wait_for(lock, kWaitLimit, [&] { return outcome_ && outcome_->id == id; });
    if (outcome_ && outcome_->id == id) outcome = std::exchange(outcome_, std::nullopt);
  }
  if (!outcome) {
    if (!failing_) {
      spdlog::warn(
          "postgres: the catalog read to bind rules to tables takes longer than {} s; the binding "
          "stays as it was until it completes",
          kWaitLimit.count());
    }
    failing_ = true;
    return false;
  }
  apply(*outcome);
  return !failing_;
}

void TableBinder::tick(Clock::time_point now) {
  std::optional<Outcome> outcome;
  {
    std::lock_guard lock(reader_mu_);
    if (outcome_) outcome = std::exchange(outcome_, std::nullopt);
  }
  if (outcome && outcome->id == current_id_) apply(*outcome);
  if (in_flight_ && now - posted_ > kStuckLimit) {
    spdlog::warn(
        "postgres: the catalog read has not answered for {} s; reconnecting its connection",
        kStuckLimit.count());
    std::lock_guard lock(reader_mu_);
    if (socket_ >= 0) ::shutdown(socket_, SHUT_RDWR);
    posted_ = now;  // once per stuck read
  }
  if (!in_flight_ && now >= next_refresh_) (void)post_request();
}

void TableBinder::apply(Outcome& outcome) {
  in_flight_ = false;
  if (outcome.snapshot) {
    report(binding_.update(*outcome.snapshot));
    read_once_ = true;
    if (failing_) spdlog::info("postgres: reading the catalog again to bind rules to tables");
    failing_ = false;
  } else {
    if (!failing_) {
      // A lost connection is an outage the replication stream reports once already; a
      // query the server refuses (privileges, a missing catalog) is this reader's own.
      const auto level = outcome.connection_failed ? spdlog::level::info : spdlog::level::warn;
      spdlog::log(level,
                  "postgres: cannot read the catalog to bind rules to tables: {}; the binding "
                  "stays as it was, "
                  "retrying every {} s",
                  outcome.error, kCatalogInterval.count());
    }
    failing_ = true;
  }
  publish_unbound();
}

void TableBinder::reader_loop() {
  Signals::begin_worker_thread("catalog reader");
  std::unique_lock lock(reader_mu_);
  for (;;) {
    reader_cv_.wait(lock, [&] { return stop_ || request_.has_value(); });
    if (stop_) return;
    const Request request = std::exchange(request_, std::nullopt).value();
    lock.unlock();
    Outcome outcome = read(request);
    lock.lock();
    outcome_ = std::move(outcome);
    reader_cv_.notify_all();
    Signals::wake();  // the stream's loop applies it now, not at its next deadline
  }
}

TableBinder::Outcome TableBinder::read(const Request& request) {
  Outcome out;
  out.id = request.id;
  try {
    if (!conn_.connected()) {
      conn_.connect();
      std::lock_guard lock(reader_mu_);
      socket_ = conn_.socket();
    }
    DbInspector inspector(conn_);
    const auto started = Clock::now();
    out.snapshot = inspector.read_catalog(publication_, request.tables, request.oids);
    spdlog::debug(
        "catalog read in {} ms ({} relations)",
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count(),
        out.snapshot->tables.size());
  } catch (const PgError& e) {
    out.error = e.what();
    out.connection_failed = e.sqlstate().empty();
    {
      std::lock_guard lock(reader_mu_);
      socket_ = -1;
    }
    conn_.close();
  }
  return out;
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
