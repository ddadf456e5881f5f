// libFuzzer target for the configuration side: rules files and key templates.
//
// Input: the first byte selects the mode, the rest is the payload.
//   bit 0 clear  the rest is a rules YAML file for RuleSet::load. Problems must come back
//                as diagnostics (load never throws); a set that loads is planned against
//                synthetic changes on every table it names, for every operation and row
//                image, and asked for its patterns and table needs.
//   bit 0 set    the rest is a key template, up to the first NUL; the NUL-separated
//                fields after it are column values ("\x01" NULL, "\x02" an unchanged
//                TOASTed value). A template that compiles is rendered against them.
// Corpus files start with 'R' (rules) or 'K' (key template) to stay readable.
// Nothing here may throw: every escaping exception is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "walbust/core/events.h"
#include "walbust/core/key_template.h"
#include "walbust/core/rules.h"

namespace walbust {
namespace {

constexpr std::uint32_t kBoolOid = 16;
constexpr std::uint32_t kTextOid = 25;

// Values with the characters rendering must treat with care: glob characters (escaped in
// patterns), braces, colons, non-ASCII bytes, booleans, and an empty string.
const std::vector<std::string>& sample_texts() {
  static const std::vector<std::string> texts = {
      "42", "Hello*World?[x]\\", "t", "", "caf\xc3\xa9:{id}", "f", "-7", "a b\nc"};
  return texts;
}

Value text(std::string s) { return Value{Value::Kind::Text, std::move(s)}; }

// Row `variant` of a relation: mostly text, with a NULL and an unchanged value placed so
// that different columns miss in different variants.
Row make_row(const Relation& relation, std::size_t variant) {
  Row row;
  const auto& texts = sample_texts();
  for (std::size_t i = 0; i < relation.columns.size(); ++i) {
    const std::size_t pick = i + variant * 3;
    if (variant > 0 && pick % 5 == 4) {
      row.push_back(Value{Value::Kind::Null, {}});
    } else if (variant > 1 && pick % 7 == 3) {
      row.push_back(Value{Value::Kind::Unchanged, {}});
    } else {
      row.push_back(text(texts[pick % texts.size()]));
    }
  }
  return row;
}

// The old tuple of a 'K' update or delete as ChangeStream hands it over: non-key
// columns Absent.
Row key_only(const Relation& relation, Row row) {
  for (std::size_t i = 0; i < row.size(); ++i) {
    if (!relation.columns[i].is_key) row[i] = Value{};
  }
  return row;
}

void plan_all(const RuleSet& set, const Change& change) {
  std::vector<Action> actions;
  std::vector<RenderFailure> failures;
  set.plan(change, actions, &failures);
  set.plan(change, actions, nullptr);  // appends; must not depend on an empty vector
  for (const auto& a : actions) {
    if (a.rule >= set.size()) std::abort();
  }
  // Published keys through an event builder with tiny parts, into their commands.
  std::vector<PublishedKey> published;
  set.plan(change, actions, nullptr, &published);
  EventBuilder events(2, 64);
  std::vector<TargetedAction> out;
  events.begin(change.commit_lsn, change.xid);
  events.add(set, published, std::vector<std::uint64_t>(set.size(), 3), out);
  events.commit(out);
  for (const auto& t : out) {
    if (t.target > 1 || !t.action.event || event_command(*t.action.event).size() < 3) std::abort();
  }
  for (const auto& f : failures) {
    if (f.rule >= set.size()) std::abort();
  }
}

void plan_synthetic(const RuleSet& set) {
  (void)set.all_keys_as_patterns();
  for (const auto& needs : set.table_needs()) {
    if (!set.watches(needs.schema, needs.name)) std::abort();  // table_needs names watched tables
    auto relation = std::make_shared<Relation>();
    relation->oid = 16384;
    relation->schema = needs.schema;
    relation->name = needs.name;
    relation->replica_identity = needs.needs_old_row ? 'f' : 'd';
    bool first = true;
    for (const auto& column : needs.columns) {
      // The first column is the key; "flag"-like columns are booleans for |python.
      relation->columns.push_back(
          Column{column, column.size() % 3 == 0 ? kBoolOid : kTextOid, -1, first});
      first = false;
    }
    // A column no rule names, so rows are never exactly the named set.
    relation->columns.push_back(Column{"unnamed", kTextOid, -1, first});

    const auto change = [&](Op op) {
      Change c;
      c.op = op;
      c.relation = relation;
      c.lsn = 0x153AAC8;
      c.xid = 731;
      c.commit_lsn = 0x153AD38;
      c.commit_time_us = 1;
      return c;
    };
    for (std::size_t variant = 0; variant < 3; ++variant) {
      const Row now = make_row(*relation, variant);
      const Row before = make_row(*relation, variant + 1);

      Change insert = change(Op::Insert);
      insert.new_row = now;
      plan_all(set, insert);

      Change full = change(Op::Update);  // REPLICA IDENTITY FULL
      full.old_row = before;
      full.new_row = now;
      plan_all(set, full);

      Change keyed = change(Op::Update);  // key changed, DEFAULT identity
      keyed.old_row = key_only(*relation, before);
      keyed.new_row = now;
      plan_all(set, keyed);

      Change bare = change(Op::Update);  // key unchanged: no old tuple
      bare.new_row = now;
      plan_all(set, bare);

      Change same = change(Op::Update);  // nothing changed
      same.old_row = now;
      same.new_row = now;
      plan_all(set, same);

      Change gone = change(Op::Delete);
      gone.old_row = variant == 0 ? key_only(*relation, before) : before;
      plan_all(set, gone);
    }
    Change truncate = change(Op::Truncate);
    truncate.truncate_options = 3;
    plan_all(set, truncate);

    // A relation that lost every column the rules name (schema change): unknown_column.
    auto bare_relation = std::make_shared<Relation>(*relation);
    bare_relation->columns.assign(1, Column{"unnamed", kTextOid, -1, true});
    Change shrunk = change(Op::Update);
    shrunk.relation = bare_relation;
    shrunk.old_row = Row{text("1")};
    shrunk.new_row = Row{text("2")};
    plan_all(set, shrunk);
  }
}

void fuzz_rules_file(std::string_view yaml) {
  Diagnostics diags;
  const RuleSet set = RuleSet::load({{"fuzz.yaml", std::string(yaml)}}, diags);
  if (!diags.empty()) {
    (void)diags.format();
    return;
  }
  plan_synthetic(set);
}

void fuzz_template(std::string_view rest) {
  const std::size_t nul = rest.find('\0');
  const std::string_view source = rest.substr(0, nul);
  std::vector<TemplateError> errors;
  const auto compiled = KeyTemplate::compile(source, errors);
  // Failure and errors go together; an error points into the template (or just past it).
  if (compiled.has_value() != errors.empty()) std::abort();
  for (const auto& e : errors) {
    if (e.offset > source.size() || e.message.empty()) std::abort();
  }
  if (!compiled) return;
  const KeyTemplate& t = *compiled;
  (void)t.as_pattern(true);
  (void)t.as_pattern(false);

  // Fields after the template become column values, in placeholder order.
  std::vector<Value> fields;
  if (nul != std::string_view::npos) {
    std::string_view values = rest.substr(nul + 1);
    while (true) {
      const std::size_t end = values.find('\0');
      const std::string_view field = values.substr(0, end);
      if (field == "\x01") {
        fields.push_back(Value{Value::Kind::Null, {}});
      } else if (field == "\x02") {
        fields.push_back(Value{Value::Kind::Unchanged, {}});
      } else {
        fields.push_back(text(std::string(field)));
      }
      if (end == std::string_view::npos) break;
      values.remove_prefix(end + 1);
    }
  }
  Relation relation;
  relation.schema = "public";
  relation.name = "t";
  for (const auto& p : t.placeholders()) {
    if (relation.column_index(p.column) >= 0) continue;
    const std::uint32_t type = relation.columns.size() % 2 == 0 ? kTextOid : kBoolOid;
    relation.columns.push_back(Column{p.column, type, -1, relation.columns.empty()});
  }
  Row new_row;
  Row old_row;
  for (std::size_t i = 0; i < relation.columns.size(); ++i) {
    new_row.push_back(i < fields.size() ? fields[i] : text("v" + std::to_string(i)));
    old_row.push_back(i + 1 < fields.size() ? fields[i + 1] : text("o" + std::to_string(i)));
  }
  const std::string null_literal = "None";
  for (const RowImage current : {RowImage::New, RowImage::Old}) {
    for (int variant = 0; variant < 4; ++variant) {
      RenderRows rows;
      rows.relation = &relation;
      rows.new_row = variant == 1 ? nullptr : &new_row;
      rows.old_row = variant == 2 ? nullptr : &old_row;
      rows.current = current;
      RenderOptions options;
      options.null_literal = variant == 3 ? &null_literal : nullptr;
      options.escape_glob = (variant & 1) != 0;
      std::string out;
      TemplateSkip skip;
      if (!t.render(rows, options, out, skip) && skip.reason.empty()) std::abort();
    }
  }
}

}  // namespace
}  // namespace walbust

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1) == 0) {
    walbust::fuzz_rules_file(rest);
  } else {
    walbust::fuzz_template(rest);
  }
  return 0;
}
