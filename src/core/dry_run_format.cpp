#include "walbust/core/dry_run_format.h"

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>

#include "walbust/core/events.h"
#include "walbust/core/key_text.h"

namespace walbust {
namespace {

using json = nlohmann::ordered_json;

json row_json(const Relation& rel, const Row& row) {
  json out = json::object();
  for (std::size_t i = 0; i < row.size() && i < rel.columns.size(); ++i) {
    const Value& v = row[i];
    // Unchanged TOAST values and columns outside the replica identity were not sent:
    // absent, so nobody mistakes them for NULL.
    if (v.kind == Value::Kind::Text) {
      out[rel.columns[i].name] = v.text;
    } else if (v.kind == Value::Kind::Null) {
      out[rel.columns[i].name] = nullptr;
    }
  }
  return out;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

void append_publish_actions(const RuleSet& rules, const std::vector<PublishedKey>& published,
                            std::vector<Action>& actions) {
  const std::size_t begin = actions.size();
  for (const auto& p : published) {
    const PublishDestination& dest = rules.rule(p.rule).publish.at(p.destination);
    const bool seen = std::any_of(
        actions.begin() + static_cast<std::ptrdiff_t>(begin), actions.end(), [&](const Action& a) {
          return a.key == p.key && a.event->destination.kind == dest.kind &&
                 a.event->destination.name == dest.name;
        });
    if (seen) continue;
    auto event = std::make_shared<PublishEvent>();
    event->destination = dest;
    Action a;
    a.kind = ActionKind::Publish;
    a.rule = p.rule;
    a.key = p.key;
    a.event = std::move(event);
    actions.push_back(std::move(a));
  }
}

std::optional<std::vector<std::string>> changed_columns(const Change& change) {
  if (change.op != Op::Update || !change.old_row || !change.new_row) return std::nullopt;
  const auto& rel = *change.relation;
  std::vector<std::string> changed;
  for (std::size_t i = 0; i < rel.columns.size(); ++i) {
    const Value& o = (*change.old_row)[i];
    const Value& n = (*change.new_row)[i];
    if (n.kind == Value::Kind::Unchanged) continue;  // TOAST not sent: unchanged by definition
    if (o.kind == Value::Kind::Absent || o.kind == Value::Kind::Unchanged) return std::nullopt;
    if (o.kind != n.kind || o.text != n.text) changed.push_back(rel.columns[i].name);
  }
  return changed;
}

std::string format_change_json(const Change& change, const std::vector<Action>& actions,
                               const RuleSet& rules, const std::vector<ActionProbe>& probes,
                               std::size_t scan_limit, bool replicas) {
  const Relation& rel = *change.relation;
  json j = json::object();
  j["type"] = "change";
  j["lsn"] = format_lsn(change.lsn);
  j["xid"] = change.xid;
  j["table"] = rel.qualified_name();
  j["op"] = std::string(op_name(change.op));
  if (auto changed = changed_columns(change)) {
    j["changed"] = *changed;
  } else {
    j["changed"] = nullptr;
  }
  j["old"] = change.old_row ? row_json(rel, *change.old_row) : json(nullptr);
  j["new"] = change.new_row ? row_json(rel, *change.new_row) : json(nullptr);
  json list = json::array();
  for (std::size_t i = 0; i < actions.size(); ++i) {
    const Action& a = actions[i];
    json item = {{"rule", rules.rule(a.rule).name},
                 {"action", std::string(action_name(a.kind))},
                 {"key", a.key}};
    if (a.kind == ActionKind::BumpVersion) item["value"] = a.value;
    if (replicas) item["after_replay"] = repeated_after_replay(a);
    if (a.kind == ActionKind::Publish && a.event) {
      item[std::string(publish_kind_name(a.event->destination.kind))] = a.event->destination.name;
      list.push_back(std::move(item));  // nothing to probe: the key is sent, not deleted
      continue;
    }
    if (i < probes.size()) {
      item["exists"] = probes[i].exists;
      if (a.kind == ActionKind::DeletePattern) {
        item["matches"] = probes[i].matches;
        item["scan_limit"] = scan_limit;
        item["truncated"] = probes[i].truncated;
      }
    }
    list.push_back(std::move(item));
  }
  j["actions"] = std::move(list);
  return dump(j);
}

std::string format_summary_json(const DryRunSummary& s) {
  json j = {{"type", "summary"}, {"changes", s.changes}, {"matched", s.matched}, {"keys", s.keys}};
  j["existing"] = s.checked_redis ? json(s.existing) : json(nullptr);
  return dump(j);
}

std::string format_change_text(const Change& change, const std::vector<Action>& actions,
                               const RuleSet& rules, const std::vector<ActionProbe>& probes,
                               std::size_t scan_limit, bool replicas) {
  std::string out = format_lsn(change.lsn) + "  xid " + std::to_string(change.xid) + "  " +
                    change.relation->qualified_name() + "  " + std::string(op_name(change.op));
  if (change.op == Op::Update) {
    if (auto changed = changed_columns(change)) {
      out += "  changed: ";
      if (changed->empty()) out += "(nothing)";
      for (std::size_t i = 0; i < changed->size(); ++i) out += (i ? ", " : "") + (*changed)[i];
    } else {
      out += "  changed: unknown (no previous row)";
    }
  }
  out += '\n';
  if (actions.empty()) out += "    (no rule matched)\n";
  for (std::size_t i = 0; i < actions.size(); ++i) {
    const Action& a = actions[i];
    out += "    " + rules.rule(a.rule).name + "  " + std::string(action_name(a.kind)) + "  " +
           escape_key_text(a.key);
    if (a.kind == ActionKind::BumpVersion) out += " = " + a.value;
    if (replicas && repeated_after_replay(a)) out += "  [again after replay]";
    if (a.kind == ActionKind::Publish && a.event) {
      out += "  -> " + std::string(publish_kind_name(a.event->destination.kind)) + " " +
             escape_key_text(a.event->destination.name) + "\n";
      continue;
    }
    if (i < probes.size()) {
      if (a.kind == ActionKind::DeletePattern) {
        out += "  [" + std::to_string(probes[i].matches) + (probes[i].truncated ? "+" : "") +
               " keys match";
        if (probes[i].truncated) out += ", scan stopped at " + std::to_string(scan_limit) + " keys";
        out += "]";
      } else {
        out += probes[i].exists ? "  [exists]" : "  [absent]";
      }
    }
    out += '\n';
  }
  return out;
}

std::string format_summary_text(const DryRunSummary& s) {
  std::string out = std::to_string(s.changes) + " changes, " + std::to_string(s.matched) +
                    " matched a rule, " + std::to_string(s.keys) + " keys";
  if (s.checked_redis) {
    const double share =
        s.keys == 0 ? 0.0 : 100.0 * static_cast<double>(s.existing) / static_cast<double>(s.keys);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f", share);
    out +=
        " (" + std::to_string(s.existing) + " exist in Redis: " + buf + "% of deletes would hit)";
  }
  return out + "\n";
}

}  // namespace walbust
