#include "walbust/core/rule_binding.h"

#include <algorithm>
#include <unordered_set>

namespace walbust {

namespace {

bool contains(const std::vector<std::uint32_t>& oids, std::uint32_t oid) {
  return std::find(oids.begin(), oids.end(), oid) != oids.end();
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

const CatalogTable* CatalogSnapshot::find(std::uint32_t oid) const {
  for (const auto& t : tables) {
    if (t.oid == oid) return &t;
  }
  return nullptr;
}

const CatalogTable* CatalogSnapshot::find(std::string_view schema, std::string_view name) const {
  for (const auto& t : tables) {
    if (t.schema == schema && t.name == name) return &t;
  }
  return nullptr;
}

Coverage coverage_of(const CatalogSnapshot& snapshot, const CatalogTable& table,
                     std::string* ancestor) {
  if (table.published) return Coverage::Direct;
  // Without publish_via_partition_root the leaves are published, each under its own OID.
  if (table.relkind == 'p' && table.member) return Coverage::Partitions;
  for (const auto& t : snapshot.tables) {
    if (t.published && contains(t.ancestors, table.oid)) return Coverage::Partitions;
  }
  for (const std::uint32_t a : table.ancestors) {
    const CatalogTable* p = snapshot.find(a);
    if (p != nullptr && p->published) {
      if (ancestor != nullptr) *ancestor = p->qualified_name();
      return Coverage::UnderAncestor;
    }
  }
  return Coverage::NotPublished;
}

std::string_view schema_change_kind(SchemaChange::Kind kind) {
  return kind == SchemaChange::Kind::Rename ? "rename" : "recreate";
}

std::string describe(const SchemaChange& c) {
  const std::string rules = (c.rules.size() == 1 ? "rule " : "rules ") + join(c.rules);
  if (c.kind == SchemaChange::Kind::Rename) {
    return "table " + c.old_name + " was renamed to " + c.new_name + " (OID " +
           std::to_string(c.new_oid) + "); " + rules + " on " + c.rule_table +
           " keep matching it. Change their table: to " + c.new_name +
           " before the next restart, which binds by name";
  }
  return "table " + c.rule_table + " was dropped and created again (OID " +
         std::to_string(c.old_oid) + " -> " + std::to_string(c.new_oid) + "); " + rules +
         " now match the new table";
}

RuleBinding::RuleBinding(const RuleSet& rules) { rebind(rules); }

RuleBinding::Table& RuleBinding::table_for(const RuleInfo& info) {
  for (auto& t : tables_) {
    if (t.schema == info.schema && t.name == info.table) return t;
  }
  Table t;
  t.schema = info.schema;
  t.name = info.table;
  t.reason = "table " + info.schema + "." + info.table + " was not looked up in the catalog yet";
  tables_.push_back(std::move(t));
  return tables_.back();
}

void RuleBinding::rebind(const RuleSet& rules) {
  std::vector<Table> old = std::move(tables_);
  tables_.clear();
  rule_names_.clear();
  rule_columns_.clear();
  rule_table_.clear();
  for (auto& t : old) t.rules.clear();
  for (std::uint32_t i = 0; i < rules.size(); ++i) {
    const RuleInfo& info = rules.rule(i);
    const auto kept = std::find_if(old.begin(), old.end(), [&](const Table& t) {
      return t.schema == info.schema && t.name == info.table;
    });
    // A table the previous rules already bound keeps its OID (and so its renames).
    if (kept != old.end() && !kept->schema.empty()) {
      tables_.push_back(std::move(*kept));
      kept->schema.clear();
    }
    Table& t = table_for(info);
    rule_table_.push_back(static_cast<std::size_t>(&t - tables_.data()));
    t.rules.push_back(i);
    rule_names_.push_back(info.name);
    rule_columns_.push_back(rules.rule_columns(i));
  }
}

SchemaChange RuleBinding::change_of(const Table& t, SchemaChange::Kind kind) const {
  SchemaChange c;
  c.kind = kind;
  c.rule_table = qualified(t);
  for (const std::uint32_t r : t.rules) c.rules.push_back(rule_names_[r]);
  return c;
}

std::optional<SchemaChange> RuleBinding::follow(Table& t, const CatalogSnapshot& snapshot) {
  const CatalogTable* by_oid = t.oid != 0 ? snapshot.find(t.oid) : nullptr;
  const CatalogTable* by_name = snapshot.find(t.schema, t.name);
  // Identity first: a renamed table is still the rule's table.
  const CatalogTable* chosen = by_oid != nullptr ? by_oid : by_name;
  std::optional<SchemaChange> change;
  if (by_oid == nullptr && by_name != nullptr && t.oid != 0) {
    change = change_of(t, SchemaChange::Kind::Recreate);
    change->old_oid = t.oid;
  } else if (by_oid != nullptr && !t.current_name.empty() &&
             by_oid->qualified_name() != t.current_name) {
    change = change_of(t, SchemaChange::Kind::Rename);
    change->old_oid = t.oid;
  }
  if (change) {
    change->old_name = t.current_name.empty() ? qualified(t) : t.current_name;
    change->new_name = chosen->qualified_name();
    change->new_oid = chosen->oid;
  }
  if (chosen != nullptr) {
    t.oid = chosen->oid;
    t.current_name = chosen->qualified_name();
    t.columns = chosen->columns;
    t.columns_known = true;
  } else {
    // Keep the old OID: the same name created again is then a recreation.
    t.columns_known = false;
  }
  return change;
}

void RuleBinding::judge(Table& t, const CatalogSnapshot& snapshot) {
  const CatalogTable* found = t.oid != 0 ? snapshot.find(t.oid) : nullptr;
  const std::string name = qualified(t);
  const std::string& pub = snapshot.publication;
  t.reason.clear();
  if (found == nullptr) {
    t.reason = "table " + name + " does not exist";
    return;
  }
  if (!snapshot.publication_exists) {
    t.reason = "publication " + pub + " does not exist";
    return;
  }
  std::string ancestor;
  switch (coverage_of(snapshot, *found, &ancestor)) {
    case Coverage::Direct:
    case Coverage::Partitions:
      return;
    case Coverage::UnderAncestor:
      t.reason = "publication " + pub + " publishes the changes of " + found->qualified_name() +
                 " under its partition root " + ancestor +
                 " (publish_via_partition_root = true), where its rows cannot be told apart";
      return;
    case Coverage::NotPublished:
      t.reason = "table " + found->qualified_name() + " is not in publication " + pub;
      return;
  }
}

void RuleBinding::route(const CatalogSnapshot& snapshot) {
  // Linear in the snapshot: a FOR ALL TABLES publication may list thousands of tables.
  std::unordered_set<std::uint32_t> present;
  for (const auto& c : snapshot.tables) present.insert(c.oid);
  std::unordered_map<std::uint32_t, std::vector<const Table*>> by_oid;
  for (const auto& t : tables_) {
    if (t.oid != 0 && present.contains(t.oid)) by_oid[t.oid].push_back(&t);
  }
  decltype(routes_) routes;
  for (const auto& c : snapshot.tables) {
    auto& r = routes[c.oid];
    const auto add = [&](std::uint32_t oid) {
      const auto it = by_oid.find(oid);
      if (it == by_oid.end()) return;
      for (const Table* t : it->second) r.emplace_back(t->schema, t->name);
    };
    add(c.oid);
    for (const std::uint32_t a : c.ancestors) add(a);
  }
  // Gone from the catalog, but the stream may still carry its changes.
  for (auto& [oid, tables] : routes_) {
    if (!present.contains(oid)) routes.emplace(oid, std::move(tables));
  }
  routes_ = std::move(routes);
}

std::vector<SchemaChange> RuleBinding::update(const CatalogSnapshot& snapshot) {
  std::vector<SchemaChange> changes;
  for (auto& t : tables_) {
    if (auto c = follow(t, snapshot)) changes.push_back(std::move(*c));
    judge(t, snapshot);
  }
  route(snapshot);
  return changes;
}

std::optional<SchemaChange> RuleBinding::observe(const Relation& relation, bool* needs_catalog) {
  const auto it = routes_.find(relation.oid);
  bool unknown = it == routes_.end();
  std::vector<std::string> columns;
  columns.reserve(relation.columns.size());
  for (const auto& c : relation.columns) columns.push_back(c.name);
  for (auto& t : tables_) {
    if (t.oid == relation.oid && t.current_name != relation.qualified_name()) unknown = true;
    if (it == routes_.end()) continue;
    for (const auto& [schema, name] : it->second) {
      if (t.schema == schema && t.name == name) {
        t.columns = columns;
        t.columns_known = true;
      }
    }
  }
  if (needs_catalog != nullptr) *needs_catalog = unknown;
  // Renames are reported from the catalog only: a Relation message is decoded with the
  // catalog of its WAL position and may carry a name the table no longer has.
  return std::nullopt;
}

void RuleBinding::plan(const RuleSet& rules, const Change& change, std::vector<Action>& out,
                       std::vector<RenderFailure>* failures, std::vector<PublishedKey>* published) {
  if (!change.relation) return;
  const auto it = routes_.find(change.relation->oid);
  if (it == routes_.end()) {
    rules.plan(change, out, failures, published);
    return;
  }
  if (change.op == Op::Truncate && change.lsn != truncate_lsn_) {
    truncate_lsn_ = change.lsn;
    truncated_.clear();
  }
  for (const auto& table : it->second) {
    if (change.op == Op::Truncate && !truncated_.insert(table).second) continue;
    rules.plan_table(table.first, table.second, change, out, failures, published);
  }
}

std::vector<UnboundRule> RuleBinding::unbound() const {
  std::vector<UnboundRule> out;
  for (std::uint32_t i = 0; i < rule_table_.size(); ++i) {
    const Table& t = tables_[rule_table_[i]];
    if (!t.reason.empty()) {
      out.push_back({i, t.reason});
      continue;
    }
    if (!t.columns_known) continue;
    std::vector<std::string> missing;
    for (const auto& col : rule_columns_[i]) {
      if (std::find(t.columns.begin(), t.columns.end(), col) == t.columns.end()) {
        missing.push_back(col);
      }
    }
    if (missing.empty()) continue;
    const std::string table = t.current_name.empty() ? qualified(t) : t.current_name;
    out.push_back({i, (missing.size() == 1 ? "column " : "columns ") + join(missing) +
                          " of table " + table + (missing.size() == 1 ? " does" : " do") +
                          " not exist (dropped or renamed)"});
  }
  return out;
}

std::vector<std::uint32_t> RuleBinding::bound_oids() const {
  std::vector<std::uint32_t> out;
  for (const auto& t : tables_) {
    if (t.oid != 0) out.push_back(t.oid);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> RuleBinding::rule_tables() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& t : tables_) out.emplace_back(t.schema, t.name);
  return out;
}

}  // namespace walbust
