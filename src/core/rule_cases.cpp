#include "walbust/core/rule_cases.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <set>

#include "walbust/core/lsn.h"
#include "walbust/core/yaml_section.h"

namespace walbust {
namespace {

// The commit LSN a case runs at unless it gives `lsn:`; bump_version writes it.
constexpr Lsn kDefaultCaseLsn = 0x1000000;  // 0/1000000

// A YAML scalar as PostgreSQL's text output (true → t, null → NULL), as in rules' `when`.
Value postgres_value(const YAML::Node& node) {
  if (node.IsNull()) return Value{Value::Kind::Null, {}};
  const std::string& s = node.Scalar();
  if (node.Tag() != "!") {
    if (s == "true" || s == "True" || s == "TRUE") return Value{Value::Kind::Text, "t"};
    if (s == "false" || s == "False" || s == "FALSE") return Value{Value::Kind::Text, "f"};
  }
  return Value{Value::Kind::Text, s};
}

using Image = std::vector<std::pair<std::string, Value>>;  // in the order written

struct Case {
  std::string name;
  std::string schema;
  std::string table;
  Op op = Op::Insert;
  std::optional<Image> old_image;
  std::optional<Image> new_image;
  Lsn lsn = kDefaultCaseLsn;
  std::array<std::set<std::string>, 3> expect;  // indexed by ActionKind
  // publish: channel or stream name → keys (and TRUNCATE patterns) published there.
  // Without `publish:` in `expect`, published keys are not checked: by default they
  // repeat the delete keys, which the case already checks.
  std::map<std::string, std::set<std::string>> expect_publish;
  bool check_publish = false;
};

class CaseParser {
 public:
  CaseParser(const std::string& file, Diagnostics& diags) : file_(file), diags_(diags) {}

  // Entries of a map; unknown and duplicate keys are reported (the walker rules and
  // config files use too).
  std::map<std::string, YAML::Node> entries(const YAML::Node& map,
                                            std::initializer_list<std::string_view> allowed) {
    YamlSection section(file_, map, "", diags_);
    section.allow_only(allowed);
    std::map<std::string, YAML::Node> out;
    for (const auto name : allowed) {
      if (const auto* entry = section.find(name)) out.emplace(std::string(name), entry->value);
    }
    return out;
  }

  std::optional<Case> parse(const YAML::Node& node) {
    if (!node.IsMap()) {
      error(node, "a case must be a map");
      return std::nullopt;
    }
    const std::size_t before = diags_.size();
    auto fields = entries(node, {"name", "table", "op", "old", "new", "lsn", "expect"});
    Case c;
    c.name = required_string(node, fields, "name");
    const std::string table = required_string(node, fields, "table");
    const std::size_t dot = table.find('.');
    c.schema = dot == std::string::npos ? "public" : table.substr(0, dot);
    c.table = dot == std::string::npos ? table : table.substr(dot + 1);
    const std::string op = required_string(node, fields, "op");
    if (const auto parsed = parse_op(op)) {
      c.op = *parsed;
    } else if (fields.count("op") != 0) {
      error(fields["op"], "unknown op '" + op + "' (expected insert, update, delete or truncate)");
    }
    if (fields.count("old") != 0) c.old_image = image(fields["old"], "old");
    if (fields.count("new") != 0) c.new_image = image(fields["new"], "new");
    check_images(node, fields, c);
    if (fields.count("lsn") != 0) {
      const YAML::Node& lsn = fields["lsn"];
      const auto parsed = lsn.IsScalar() ? parse_lsn(lsn.Scalar()) : std::nullopt;
      if (parsed) {
        c.lsn = *parsed;
      } else {
        error(lsn, "invalid lsn (expected e.g. \"0/16B3748\")");
      }
    }
    if (fields.count("expect") == 0) {
      error(node, "missing required key 'expect'");
    } else {
      parse_expect(fields["expect"], c);
    }
    if (diags_.size() != before) return std::nullopt;
    return c;
  }

  void error(const YAML::Node& node, std::string message) {
    diags_.add(file_, node, std::move(message));
  }

 private:
  std::string required_string(const YAML::Node& node, std::map<std::string, YAML::Node>& fields,
                              const std::string& key) {
    const auto it = fields.find(key);
    if (it == fields.end()) {
      error(node, "missing required key '" + key + "'");
      return {};
    }
    if (!it->second.IsScalar() || it->second.Scalar().empty()) {
      error(it->second, "'" + key + "' must be a non-empty string");
      return {};
    }
    return it->second.Scalar();
  }

  std::optional<Image> image(const YAML::Node& node, std::string_view what) {
    if (!node.IsMap()) {
      error(node, "'" + std::string(what) + "' must be a map of column: value");
      return std::nullopt;
    }
    Image out;
    for (const auto& item : node) {
      const std::string column = yaml_key_text(item.first);
      if (!item.second.IsNull() && !item.second.IsScalar()) {
        error(item.second, "column values must be scalars");
      } else if (std::any_of(out.begin(), out.end(),
                             [&](const auto& e) { return e.first == column; })) {
        error(item.first, "duplicate key '" + column + "'");
      } else {
        out.emplace_back(column, postgres_value(item.second));
      }
    }
    return out;
  }

  // Which images an operation carries; an update may omit `old` (no previous row sent).
  void check_images(const YAML::Node& node, std::map<std::string, YAML::Node>& fields,
                    const Case& c) {
    const bool has_old = fields.count("old") != 0;
    const bool has_new = fields.count("new") != 0;
    if (c.op == Op::Insert && has_old) error(fields["old"], "an insert has no 'old' row");
    if ((c.op == Op::Insert || c.op == Op::Update) && !has_new && fields.count("op") != 0) {
      error(node, "an " + std::string(op_name(c.op)) + " needs a 'new' row");
    }
    if (c.op == Op::Delete && has_new) error(fields["new"], "a delete has no 'new' row");
    if (c.op == Op::Delete && !has_old && fields.count("op") != 0) {
      error(node, "a delete needs an 'old' row");
    }
    if (c.op == Op::Truncate && (has_old || has_new)) {
      error(has_old ? fields["old"] : fields["new"], "a truncate has no rows");
    }
  }

  void parse_expect(const YAML::Node& node, Case& c) {
    if (!node.IsMap()) {
      error(node, "'expect' must be a map of delete, delete_pattern, bump_version, publish");
      return;
    }
    auto fields = entries(node, {"delete", "delete_pattern", "bump_version", "publish"});
    if (fields.count("publish") != 0) {
      c.check_publish = true;
      parse_expect_publish(fields["publish"], c);
    }
    for (const ActionKind kind :
         {ActionKind::Delete, ActionKind::DeletePattern, ActionKind::BumpVersion}) {
      const auto it = fields.find(std::string(action_name(kind)));
      if (it == fields.end()) continue;
      if (!it->second.IsSequence()) {
        error(it->second, "'" + it->first + "' must be a list of keys");
        continue;
      }
      for (const auto& key : it->second) {
        if (!key.IsScalar()) {
          error(key, "'" + it->first + "' must be a list of keys");
        } else {
          c.expect[static_cast<std::size_t>(kind)].insert(key.Scalar());
        }
      }
    }
  }

  void parse_expect_publish(const YAML::Node& node, Case& c) {
    const std::string message = "'publish' must be a map of channel or stream name: [keys]";
    if (!node.IsMap()) {
      error(node, message);
      return;
    }
    for (const auto& item : node) {
      const std::string name = yaml_key_text(item.first);
      if (!item.second.IsSequence()) {
        error(item.second, message);
        continue;
      }
      auto& keys = c.expect_publish[name];
      for (const auto& key : item.second) {
        if (key.IsScalar()) {
          keys.insert(key.Scalar());
        } else {
          error(key, message);
        }
      }
    }
  }

  const std::string& file_;
  Diagnostics& diags_;
};

// Builds the change PostgreSQL would send. Columns are the union of both images (all
// non-key, identity FULL, no types). On an update a column given in `old` but not in
// `new` is an unchanged TOASTed value (Unchanged), and one given in `new` but not in `old`
// was not sent in the old row (Absent), as without REPLICA IDENTITY FULL.
Change build_change(const Case& c) {
  auto relation = std::make_shared<Relation>();
  relation->schema = c.schema;
  relation->name = c.table;
  relation->replica_identity = 'f';
  for (const auto* image : {&c.old_image, &c.new_image}) {
    if (!*image) continue;
    for (const auto& [column, value] : **image) {
      if (relation->column_index(column) < 0) relation->columns.push_back(Column{column});
    }
  }
  const auto row_of = [&](const Image& image, Value::Kind missing) {
    Row row(relation->columns.size(), Value{missing, {}});
    for (const auto& [column, value] : image) {
      row[static_cast<std::size_t>(relation->column_index(column))] = value;
    }
    return row;
  };
  Change change;
  change.op = c.op;
  change.relation = relation;
  change.commit_lsn = c.lsn;
  change.lsn = c.lsn;
  if (c.old_image) change.old_row = row_of(*c.old_image, Value::Kind::Absent);
  if (c.new_image) {
    Row row = row_of(*c.new_image, Value::Kind::Absent);
    if (c.old_image) {
      for (std::size_t i = 0; i < row.size(); ++i) {
        if (row[i].kind == Value::Kind::Absent &&
            (*change.old_row)[i].kind != Value::Kind::Absent) {
          row[i].kind = Value::Kind::Unchanged;
        }
      }
    }
    change.new_row = std::move(row);
  }
  return change;
}

std::string join(const std::set<std::string>& keys) {
  std::string out = "[";
  for (const auto& key : keys) {
    if (out.size() > 1) out += ", ";
    out += key;
  }
  return out + "]";
}

// Appends "WHAT: missing [a, b]; unexpected [c]" when the sets differ.
void add_difference(std::string& out, const std::string& what, const std::set<std::string>& want,
                    const std::set<std::string>& got) {
  std::set<std::string> missing;
  std::set<std::string> unexpected;
  std::set_difference(want.begin(), want.end(), got.begin(), got.end(),
                      std::inserter(missing, missing.end()));
  std::set_difference(got.begin(), got.end(), want.begin(), want.end(),
                      std::inserter(unexpected, unexpected.end()));
  if (missing.empty() && unexpected.empty()) return;
  if (!out.empty()) out += "; ";
  out += what + ":";
  if (!missing.empty()) out += " missing " + join(missing);
  if (!missing.empty() && !unexpected.empty()) out += ";";
  if (!unexpected.empty()) out += " unexpected " + join(unexpected);
}

// Differences over every action kind, then every channel or stream ("publish NAME: ...").
std::string difference(const Case& c, const RuleSet& rules, const std::vector<Action>& actions,
                       const std::vector<PublishedKey>& published) {
  std::array<std::set<std::string>, 3> produced;
  for (const auto& a : actions) produced[static_cast<std::size_t>(a.kind)].insert(a.key);
  std::string out;
  for (const ActionKind kind :
       {ActionKind::Delete, ActionKind::DeletePattern, ActionKind::BumpVersion}) {
    add_difference(out, std::string(action_name(kind)), c.expect[static_cast<std::size_t>(kind)],
                   produced[static_cast<std::size_t>(kind)]);
  }
  if (!c.check_publish) return out;
  std::map<std::string, std::set<std::string>> got;
  for (const auto& p : published)
    got[rules.rule(p.rule).publish.at(p.destination).name].insert(p.key);
  std::set<std::string> names;
  for (const auto& [name, keys] : c.expect_publish) names.insert(name);
  for (const auto& [name, keys] : got) names.insert(name);
  const std::set<std::string> none;
  for (const auto& name : names) {
    const auto want = c.expect_publish.find(name);
    const auto have = got.find(name);
    add_difference(out, "publish " + name, want == c.expect_publish.end() ? none : want->second,
                   have == got.end() ? none : have->second);
  }
  return out;
}

}  // namespace

std::vector<CaseResult> run_rule_cases(const RuleSet& rules, const RuleSource& cases,
                                       Diagnostics& diags) {
  std::vector<CaseResult> results;
  YAML::Node root;
  try {
    root = YAML::Load(cases.text);
  } catch (const YAML::ParserException& e) {
    diags.add(cases.path, e.mark.line + 1, e.mark.column + 1, e.msg);
    return results;
  }
  CaseParser parser(cases.path, diags);
  if (!root.IsMap()) {
    diags.add(cases.path, 1, 1, "a cases file must be a map with a 'cases:' list");
    return results;
  }
  auto fields = parser.entries(root, {"cases"});
  if (fields.count("cases") == 0 || !fields["cases"].IsSequence()) {
    parser.error(fields.count("cases") != 0 ? fields["cases"] : root,
                 "a cases file must have a 'cases:' list");
    return results;
  }
  std::vector<Action> actions;
  std::vector<PublishedKey> published;
  for (const auto& node : fields["cases"]) {
    const auto c = parser.parse(node);
    if (!c) continue;
    actions.clear();
    published.clear();
    rules.plan(build_change(*c), actions, nullptr, &published);
    CaseResult result{cases.path, c->name, false, difference(*c, rules, actions, published)};
    result.passed = result.difference.empty();
    results.push_back(std::move(result));
  }
  return results;
}

}  // namespace walbust
