#include "walbust/core/rules.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <utility>

#include "walbust/core/django_keys.h"
#include "walbust/core/duration.h"
#include "walbust/core/key_template.h"
#include "walbust/core/yaml_section.h"

namespace walbust {

std::string_view action_name(ActionKind kind) {
  switch (kind) {
    case ActionKind::Delete:
      return "delete";
    case ActionKind::DeletePattern:
      return "delete_pattern";
    case ActionKind::BumpVersion:
      return "bump_version";
    case ActionKind::Publish:
      return "publish";
  }
  return "unknown";
}

std::string_view publish_kind_name(PublishKind kind) {
  return kind == PublishKind::Stream ? "stream" : "channel";
}

namespace {

constexpr std::uint8_t op_bit(Op op) {
  return static_cast<std::uint8_t>(1U << static_cast<unsigned>(op));
}
constexpr std::uint8_t kAllOps =
    op_bit(Op::Insert) | op_bit(Op::Update) | op_bit(Op::Delete) | op_bit(Op::Truncate);

struct Fragment {
  std::string name;
  std::vector<KeyTemplate> vary_on;
  bool uses_current = false, uses_old = false, uses_new = false;
};

// The keys of one `publish` entry; its destination is in RuleInfo::publish.
struct PublishKeys {
  std::vector<KeyTemplate> keys;  // empty: the rule's delete keys
  int line = 0, column = 0;       // of the entry, for errors spanning rules
};

}  // namespace

struct Rule {
  RuleInfo info;
  std::uint8_t ops = kAllOps;
  std::vector<std::string> changed;
  std::vector<std::string> ignore_changes;
  std::vector<std::pair<std::string, std::optional<std::string>>> when;  // nullopt: NULL
  std::vector<KeyTemplate> deletes;
  std::vector<KeyTemplate> patterns;
  std::vector<KeyTemplate> bumps;
  std::vector<Fragment> fragments;
  std::vector<PublishKeys> publish;  // aligned with info.publish
  std::string key_prefix;            // "" (plain) or "PREFIX:VERSION:" (django)
  std::string pattern_prefix;        // key_prefix with glob characters escaped
  std::optional<std::string> null_literal;
  std::uint32_t redelete_after_ms = 0;
  bool after_replay = true;

  [[nodiscard]] bool fires_on(Op op) const { return (ops & op_bit(op)) != 0; }
};

// Rules by (schema, table). Transparent comparison lets plan() look up string_views.
struct RuleSet::TableIndex {
  struct Less {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return std::pair<std::string_view, std::string_view>(a.first, a.second) <
             std::pair<std::string_view, std::string_view>(b.first, b.second);
    }
  };
  std::map<std::pair<std::string, std::string>, std::vector<std::uint32_t>, Less> rules;
};

namespace {

// ---------------------------------------------------------------------------------------
// Loading

// Options a rule inherits from its file's defaults and may override.
struct KeyOptions {
  bool django = false;
  std::string django_prefix;
  long long django_version = 1;
  std::optional<std::string> null_literal;
  std::uint32_t redelete_after_ms = 0;
  bool after_replay = true;
};

bool is_quoted(const YAML::Node& node) { return node.Tag() == "!"; }

bool is_identifier(std::string_view name) {
  if (name.empty()) return false;
  const auto start = [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
  };
  if (!start(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [&](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return start(c) || (c >= '0' && c <= '9') || c == '$';
  });
}

// A rules-file mapping, checked against the keys it allows (the walker config files use too).
class Section : public YamlSection {
 public:
  Section(const YAML::Node& map, std::initializer_list<std::string_view> allowed,
          const std::string& file, Diagnostics& diags)
      : YamlSection(file, map, "", diags) {
    allow_only(allowed);
  }
};

std::optional<long long> parse_integer(const std::string& text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::size_t i = text[0] == '-' ? 1 : 0;
  if (i == text.size()) return std::nullopt;
  long long value = 0;
  for (; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    value = value * 10 + (text[i] - '0');
  }
  return text[0] == '-' ? -value : value;
}

// Reads one rules file into rules, reporting every problem with its position.
class FileLoader {
 public:
  FileLoader(const RuleSource& source, Diagnostics& diags,
             std::map<std::string, std::pair<std::string, int>>& names)
      : file_(source.path), text_(source.text), diags_(diags), names_(names) {}

  void load(std::vector<std::unique_ptr<Rule>>& rules) {
    YAML::Node root;
    try {
      root = YAML::Load(text_);
    } catch (const YAML::ParserException& e) {
      diags_.add(file_, e.mark.line + 1, e.mark.column + 1, e.msg);
      return;
    }
    if (!root.IsMap()) {
      diags_.add(file_, 1, 1, "a rules file must be a map with 'version: 1' and 'rules:'");
      return;
    }
    const Section top(root, {"version", "defaults", "rules"}, file_, diags_);
    check_version(root, top.find("version"));
    KeyOptions defaults;
    if (const auto* d = top.find("defaults")) load_defaults(d->value, defaults);
    const auto* list = top.find("rules");
    if (list == nullptr) {
      diags_.add(file_, root, "missing required key 'rules'");
      return;
    }
    if (!list->value.IsSequence()) {
      error(list->value, "'rules' must be a list of rules");
      return;
    }
    for (const auto& node : list->value) {
      if (auto rule = load_rule(node, defaults)) rules.push_back(std::move(rule));
    }
  }

 private:
  void error(const YAML::Node& node, std::string message) {
    diags_.add(file_, node, std::move(message));
  }

  void check_version(const YAML::Node& root, const Section::Entry* version) {
    if (version == nullptr) {
      error(root, "missing required key 'version' (this walbust reads 'version: 1')");
    } else if (!version->value.IsScalar() || version->value.Scalar() != "1") {
      error(version->value, "unsupported rules file version (this walbust reads 'version: 1')");
    }
  }

  std::optional<std::string> string_of(const Section::Entry* entry, std::string_view what) {
    if (entry == nullptr) return std::nullopt;
    if (!entry->value.IsScalar()) {
      error(entry->value, "'" + std::string(what) + "' must be a string");
      return std::nullopt;
    }
    return entry->value.Scalar();
  }

  // A list of scalars; nullopt (after reporting) when the node is something else.
  std::optional<std::vector<YAML::Node>> scalar_list(const Section::Entry& entry,
                                                     std::string_view what) {
    const std::string message = "'" + std::string(what) + "' must be a list of strings";
    if (!entry.value.IsSequence()) {
      error(entry.value, message);
      return std::nullopt;
    }
    std::vector<YAML::Node> items;
    bool ok = true;
    for (const auto& item : entry.value) {
      if (!item.IsScalar()) {
        error(item, message);
        ok = false;
      }
      items.push_back(item);
    }
    if (!ok) return std::nullopt;
    return items;
  }

  std::vector<std::string> column_list(const Section::Entry* entry, std::string_view what) {
    std::vector<std::string> columns;
    if (entry == nullptr) return columns;
    const auto items = scalar_list(*entry, what);
    if (!items) return columns;
    if (items->empty()) error(entry->value, "'" + std::string(what) + "' must not be empty");
    for (const auto& item : *items) {
      if (!is_identifier(item.Scalar())) {
        error(item, "invalid column name '" + item.Scalar() + "'");
      }
      columns.push_back(item.Scalar());
    }
    return columns;
  }

  void load_key_options(const Section& section, KeyOptions& options) {
    if (const auto format = string_of(section.find("key_format"), "key_format")) {
      if (*format == "django") {
        options.django = true;
      } else if (*format == "plain") {
        options.django = false;
      } else {
        error(section.find("key_format")->value,
              "unknown key_format '" + *format + "' (expected plain or django)");
      }
    }
    if (const auto* django = section.find("django")) load_django(django->value, options);
    if (const auto* null = section.find("null")) {
      if (!null->value.IsScalar()) {
        error(null->value, "'null' must be skip or a string to render NULL as");
      } else if (null->value.Scalar() == "skip" && !is_quoted(null->value)) {
        options.null_literal.reset();
      } else {
        options.null_literal = null->value.Scalar();
      }
    }
    if (const auto* redelete = section.find("redelete_after")) {
      const auto d =
          redelete->value.IsScalar() ? parse_duration(redelete->value.Scalar()) : std::nullopt;
      if (d && d->count() <= std::numeric_limits<std::uint32_t>::max()) {
        options.redelete_after_ms = static_cast<std::uint32_t>(d->count());
      } else {
        error(redelete->value,
              "invalid duration for 'redelete_after' (expected e.g. 500ms, 2s, 1m, 1h or 0)");
      }
    }
    if (const auto* replay = section.find("after_replay")) {
      bool value = true;
      if (replay->value.IsScalar() && YAML::convert<bool>::decode(replay->value, value)) {
        options.after_replay = value;
      } else {
        error(replay->value, "'after_replay' must be true or false");
      }
    }
  }

  void load_django(const YAML::Node& node, KeyOptions& options) {
    if (!node.IsMap()) {
      error(node, "'django' must be a map with key_prefix and version");
      return;
    }
    const Section django(node, {"key_prefix", "version"}, file_, diags_);
    if (const auto* prefix = django.find("key_prefix")) {
      if (prefix->value.IsNull()) {
        options.django_prefix.clear();
      } else if (const auto text = string_of(prefix, "key_prefix")) {
        options.django_prefix = *text;
      }
    }
    if (const auto* version = django.find("version")) {
      const auto number =
          version->value.IsScalar() ? parse_integer(version->value.Scalar()) : std::nullopt;
      if (number) {
        options.django_version = *number;
      } else {
        error(version->value, "'version' must be an integer");
      }
    }
  }

  void load_defaults(const YAML::Node& node, KeyOptions& defaults) {
    if (!node.IsMap()) {
      error(node, "'defaults' must be a map");
      return;
    }
    const Section section(node, {"key_format", "django", "null", "redelete_after", "after_replay"},
                          file_, diags_);
    load_key_options(section, defaults);
  }

  std::unique_ptr<Rule> load_rule(const YAML::Node& node, const KeyOptions& defaults) {
    if (!node.IsMap()) {
      error(node, "a rule must be a map");
      return nullptr;
    }
    const std::size_t errors_before = diags_.size();
    const Section s(node,
                    {"name", "table", "on", "ignore_changes", "changed", "when", "delete",
                     "delete_pattern", "bump_version", "fragment", "key_format", "django", "null",
                     "redelete_after", "after_replay", "targets", "publish"},
                    file_, diags_);
    auto rule = std::make_unique<Rule>();
    rule->info.file = file_;
    rule->info.line = node.Mark().line + 1;
    load_identity(node, s, *rule);
    load_ops(s, *rule);
    rule->changed = column_list(s.find("changed"), "changed");
    rule->ignore_changes = column_list(s.find("ignore_changes"), "ignore_changes");
    if (s.find("changed") != nullptr && s.find("ignore_changes") != nullptr) {
      error(s.find("ignore_changes")->key,
            "'changed' and 'ignore_changes' cannot be used together");
    }
    load_when(s.find("when"), *rule);
    if (const auto* targets = s.find("targets")) {
      if (const auto items = scalar_list(*targets, "targets")) {
        for (const auto& item : *items) rule->info.targets.push_back(item.Scalar());
      }
    }
    KeyOptions options = defaults;
    load_key_options(s, options);
    apply_key_options(options, *rule);
    load_publish(s, *rule);
    load_actions(node, s, *rule);
    if (diags_.size() != errors_before) return nullptr;
    return rule;
  }

  void load_identity(const YAML::Node& node, const Section& s, Rule& rule) {
    if (const auto name = string_of(s.find("name"), "name")) {
      if (name->empty()) {
        error(s.find("name")->value, "'name' must not be empty");
      } else if (const auto [it, inserted] =
                     names_.emplace(*name, std::pair{file_, rule.info.line});
                 !inserted) {
        error(s.find("name")->value, "duplicate rule name '" + *name + "' (first defined at " +
                                         it->second.first + ":" +
                                         std::to_string(it->second.second) + ")");
      }
      rule.info.name = *name;
    } else if (s.find("name") == nullptr) {
      error(node, "missing required key 'name'");
    }
    if (const auto table = string_of(s.find("table"), "table")) {
      const std::size_t dot = table->find('.');
      rule.info.schema = dot == std::string::npos ? "public" : table->substr(0, dot);
      rule.info.table = dot == std::string::npos ? *table : table->substr(dot + 1);
      if (!is_identifier(rule.info.schema) || !is_identifier(rule.info.table)) {
        error(s.find("table")->value,
              "invalid table name '" + *table + "' (expected schema.table or table)");
      }
    } else if (s.find("table") == nullptr) {
      error(node, "missing required key 'table'");
    }
  }

  void load_ops(const Section& s, Rule& rule) {
    const auto* on = s.find("on");
    if (on == nullptr) return;
    const auto items = scalar_list(*on, "on");
    if (!items) return;
    rule.ops = 0;
    if (items->empty()) error(on->value, "'on' must not be empty");
    for (const auto& item : *items) {
      if (const auto op = parse_op(item.Scalar())) {
        rule.ops |= op_bit(*op);
      } else {
        error(item, "unknown operation '" + item.Scalar() +
                        "' (expected insert, update, delete or truncate)");
      }
    }
  }

  void load_when(const Section::Entry* when, Rule& rule) {
    if (when == nullptr) return;
    if (!when->value.IsMap() || when->value.size() == 0) {
      error(when->value, "'when' must be a non-empty map of column: value");
      return;
    }
    for (const auto& item : when->value) {
      const std::string column = yaml_key_text(item.first);
      if (!is_identifier(column)) error(item.first, "invalid column name '" + column + "'");
      const bool repeated = std::any_of(rule.when.begin(), rule.when.end(),
                                        [&](const auto& w) { return w.first == column; });
      if (repeated) {
        error(item.first, "duplicate key '" + column + "'");
      } else if (item.second.IsNull()) {
        rule.when.emplace_back(column, std::nullopt);
      } else if (!item.second.IsScalar()) {
        error(item.second, "'when' values must be scalars");
      } else {
        rule.when.emplace_back(column, postgres_text(item.second));
      }
    }
  }

  // A YAML scalar as PostgreSQL's text output: booleans become t/f, the rest is as written.
  static std::string postgres_text(const YAML::Node& scalar) {
    const std::string& s = scalar.Scalar();
    if (!is_quoted(scalar)) {
      if (s == "true" || s == "True" || s == "TRUE") return "t";
      if (s == "false" || s == "False" || s == "FALSE") return "f";
    }
    return s;
  }

  static void apply_key_options(const KeyOptions& options, Rule& rule) {
    if (options.django) {
      rule.key_prefix = django_make_key(options.django_prefix, options.django_version, "");
      append_glob_escaped(rule.pattern_prefix, rule.key_prefix);
    }
    rule.null_literal = options.null_literal;
    rule.redelete_after_ms = options.redelete_after_ms;
    rule.after_replay = options.after_replay;
  }

  void load_actions(const YAML::Node& node, const Section& s, Rule& rule) {
    bool any = false;
    const std::pair<const char*, std::vector<KeyTemplate>*> lists[] = {
        {"delete", &rule.deletes},
        {"delete_pattern", &rule.patterns},
        {"bump_version", &rule.bumps}};
    for (const auto& [name, target] : lists) {
      const auto* entry = s.find(name);
      if (entry == nullptr) continue;
      any = true;
      const auto items = scalar_list(*entry, name);
      if (!items) continue;
      if (items->empty()) error(entry->value, "'" + std::string(name) + "' must not be empty");
      for (const auto& item : *items) {
        if (auto t = compile(item, rule)) target->push_back(std::move(*t));
      }
    }
    if (const auto* fragments = s.find("fragment")) {
      any = true;
      load_fragments(*fragments, rule);
    }
    if (!any && rule.publish.empty()) {
      error(node,
            "rule has no action (expected delete, delete_pattern, bump_version, fragment or "
            "publish)");
    }
  }

  // publish: [{channel: NAME | stream: NAME, keys: [...], maxlen: N}, ...]
  void load_publish(const Section& rule_section, Rule& rule) {
    const auto* entry = rule_section.find("publish");
    if (entry == nullptr) return;
    const bool has_delete_keys =
        rule_section.find("delete") != nullptr || rule_section.find("fragment") != nullptr;
    if (!entry->value.IsSequence() || entry->value.size() == 0) {
      error(entry->value, "'publish' must be a non-empty list of {channel or stream, keys}");
      return;
    }
    for (const auto& node : entry->value) {
      if (!node.IsMap()) {
        error(node, "a publish entry must be a map with 'channel' or 'stream'");
        continue;
      }
      const Section s(node, {"channel", "stream", "keys", "maxlen"}, file_, diags_);
      PublishDestination dest;
      if (!load_destination(node, s, dest)) continue;
      const bool repeated = std::find(rule.info.publish.begin(), rule.info.publish.end(), dest) !=
                            rule.info.publish.end();
      if (repeated) {
        error(node, "this rule already publishes to " + std::string(publish_kind_name(dest.kind)) +
                        " '" + dest.name + "'");
        continue;
      }
      PublishKeys keys;
      keys.line = node.Mark().line + 1;
      keys.column = node.Mark().column + 1;
      if (s.find("keys") == nullptr && !has_delete_keys) {
        error(node,
              "this publish entry has no 'keys' and the rule deletes no keys to publish "
              "instead: list the keys to publish");
      }
      if (const auto* list = s.find("keys")) {
        const auto items = scalar_list(*list, "keys");
        if (items && items->empty()) error(list->value, "'keys' must not be empty");
        for (const auto& item : items.value_or(std::vector<YAML::Node>{})) {
          if (auto t = compile(item, rule)) keys.keys.push_back(std::move(*t));
        }
      }
      rule.info.publish.push_back(std::move(dest));
      rule.publish.push_back(std::move(keys));
    }
  }

  bool load_destination(const YAML::Node& node, const Section& s, PublishDestination& dest) {
    const auto* channel = s.find("channel");
    const auto* stream = s.find("stream");
    const auto* maxlen = s.find("maxlen");
    if (channel != nullptr && stream != nullptr) {
      error(stream->key, "'channel' and 'stream' cannot be used together: one entry each");
      return false;
    }
    if (channel == nullptr && stream == nullptr) {
      error(node, "a publish entry needs 'channel' (PUBLISH) or 'stream' (XADD)");
      return false;
    }
    dest.kind = stream != nullptr ? PublishKind::Stream : PublishKind::Channel;
    const auto name = string_of(stream != nullptr ? stream : channel,
                                dest.kind == PublishKind::Stream ? "stream" : "channel");
    if (!name) return false;
    if (name->empty()) {
      error((stream != nullptr ? stream : channel)->value, "the name must not be empty");
      return false;
    }
    dest.name = *name;
    if (dest.kind == PublishKind::Channel) {
      if (maxlen != nullptr) error(maxlen->key, "'maxlen' applies to a stream, not a channel");
      return maxlen == nullptr;
    }
    dest.maxlen = kDefaultStreamMaxlen;
    if (maxlen != nullptr) {
      const auto n =
          maxlen->value.IsScalar() ? parse_integer(maxlen->value.Scalar()) : std::nullopt;
      if (!n || *n <= 0) {
        error(maxlen->value, "'maxlen' must be a positive integer");
        return false;
      }
      dest.maxlen = static_cast<std::uint64_t>(*n);
    }
    return true;
  }

  void load_fragments(const Section::Entry& entry, Rule& rule) {
    if (!entry.value.IsSequence() || entry.value.size() == 0) {
      error(entry.value, "'fragment' must be a non-empty list of {name, vary_on}");
      return;
    }
    if (!md5_available()) error(entry.key, "fragment keys need MD5, which OpenSSL refuses here");
    for (const auto& node : entry.value) {
      if (!node.IsMap()) {
        error(node, "a fragment must be a map with 'name' and optional 'vary_on'");
        continue;
      }
      const Section s(node, {"name", "vary_on"}, file_, diags_);
      Fragment fragment;
      if (const auto name = string_of(s.find("name"), "name")) {
        if (name->empty()) error(s.find("name")->value, "'name' must not be empty");
        fragment.name = *name;
      } else if (s.find("name") == nullptr) {
        error(node, "missing required key 'name'");
      }
      if (const auto* vary_on = s.find("vary_on")) {
        for (const auto& item :
             scalar_list(*vary_on, "vary_on").value_or(std::vector<YAML::Node>{})) {
          if (auto t = compile(item, rule)) fragment.vary_on.push_back(std::move(*t));
        }
      }
      for (const auto& t : fragment.vary_on) {
        fragment.uses_current = fragment.uses_current || t.uses(RowImage::Current);
        fragment.uses_old = fragment.uses_old || t.uses(RowImage::Old);
        fragment.uses_new = fragment.uses_new || t.uses(RowImage::New);
      }
      rule.fragments.push_back(std::move(fragment));
    }
  }

  // Compiles a template scalar, placing errors at their column inside the YAML line.
  std::optional<KeyTemplate> compile(const YAML::Node& node, const Rule& rule) {
    const std::string& text = node.Scalar();
    if (text.empty()) {
      error(node, "empty key template");
      return std::nullopt;
    }
    std::vector<TemplateError> errors;
    auto t = KeyTemplate::compile(text, errors);
    const YAML::Mark mark = node.Mark();
    const int quote = is_quoted(node) ? 1 : 0;
    for (const auto& e : errors) {
      diags_.add(file_, mark.line + 1, mark.column + 1 + quote + static_cast<int>(e.offset),
                 e.message);
    }
    if (!t) return std::nullopt;
    check_images(node, *t, rule);
    for (const auto& p : t->placeholders()) {
      const bool md5 =
          std::find(p.filters.begin(), p.filters.end(), KeyFilter::Md5) != p.filters.end();
      if (md5 && !md5_available())
        error(node, "the md5 filter needs MD5, which OpenSSL refuses here");
    }
    return t;
  }

  // {old.x} on a rule that never sees a previous row (or {new.x} with no new row) could
  // never render: almost certainly a mistake in the rule.
  void check_images(const YAML::Node& node, const KeyTemplate& t, const Rule& rule) {
    const bool with_old = (rule.ops & (op_bit(Op::Update) | op_bit(Op::Delete))) != 0;
    const bool with_new = (rule.ops & (op_bit(Op::Insert) | op_bit(Op::Update))) != 0;
    const int quote = is_quoted(node) ? 1 : 0;
    for (const auto& p : t.placeholders()) {
      const bool bad_old = p.image == RowImage::Old && !with_old && rule.fires_on(Op::Insert);
      const bool bad_new = p.image == RowImage::New && !with_new && rule.fires_on(Op::Delete);
      if (bad_old || bad_new) {
        diags_.add(file_, node.Mark().line + 1,
                   node.Mark().column + 1 + quote + static_cast<int>(p.offset),
                   bad_old ? "'{old." + p.column +
                                 "}' can never render: the rule fires on insert only, which "
                                 "has no previous row"
                           : "'{new." + p.column +
                                 "}' can never render: the rule fires on delete only, which "
                                 "has no new row");
        return;
      }
    }
  }

  const std::string& file_;
  const std::string& text_;
  Diagnostics& diags_;
  std::map<std::string, std::pair<std::string, int>>& names_;
};

// ---------------------------------------------------------------------------------------
// Matching

const Value* value_at(const Row* row, int index) {
  if (row == nullptr || index < 0 || static_cast<std::size_t>(index) >= row->size()) {
    return nullptr;
  }
  return &(*row)[static_cast<std::size_t>(index)];
}

// Whether an update changed a column. Unknown (no old row, old value not sent, column
// missing from the relation) counts as changed: walbust errs toward deleting.
bool column_changed(const Change& c, int index) {
  const Value* old_value = value_at(c.old_row ? &*c.old_row : nullptr, index);
  if (old_value == nullptr || old_value->kind == Value::Kind::Absent ||
      old_value->kind == Value::Kind::Unchanged) {
    return true;
  }
  const Value* new_value = value_at(c.new_row ? &*c.new_row : nullptr, index);
  if (new_value == nullptr) return true;
  // An unchanged TOASTed value is, by definition, unchanged.
  if (new_value->kind == Value::Kind::Unchanged || new_value->kind == Value::Kind::Absent) {
    return false;
  }
  return new_value->kind != old_value->kind ||
         (new_value->kind == Value::Kind::Text && new_value->text != old_value->text);
}

bool update_matches(const Rule& rule, const Change& c) {
  const Relation& rel = *c.relation;
  if (!rule.changed.empty()) {
    return std::any_of(rule.changed.begin(), rule.changed.end(), [&](const std::string& col) {
      return column_changed(c, rel.column_index(col));
    });
  }
  if (!rule.ignore_changes.empty()) {
    if (!c.old_row) return true;
    for (std::size_t i = 0; i < rel.columns.size(); ++i) {
      const auto& name = rel.columns[i].name;
      const bool ignored = std::find(rule.ignore_changes.begin(), rule.ignore_changes.end(),
                                     name) != rule.ignore_changes.end();
      if (!ignored && column_changed(c, static_cast<int>(i))) return true;
    }
    return false;
  }
  return true;
}

// Whether a row image has every `when` value. A value that was not sent (or a column the
// relation lacks) cannot rule the row out.
bool row_has_values(const Rule& rule, const Relation& rel, const Row* row, const Row* old_row) {
  for (const auto& [column, expected] : rule.when) {
    const int index = rel.column_index(column);
    const Value* v = value_at(row, index);
    if (v != nullptr && (v->kind == Value::Kind::Unchanged || v->kind == Value::Kind::Absent) &&
        row != old_row) {
      v = value_at(old_row, index);  // unchanged TOAST: the old row has the value
    }
    if (v == nullptr || v->kind == Value::Kind::Absent || v->kind == Value::Kind::Unchanged) {
      continue;
    }
    if (!expected) {
      if (v->kind != Value::Kind::Null) return false;
    } else if (v->kind != Value::Kind::Text || v->text != *expected) {
      return false;
    }
  }
  return true;
}

bool when_matches(const Rule& rule, const Change& c) {
  if (rule.when.empty()) return true;
  const Relation& rel = *c.relation;
  const Row* old_row = c.old_row ? &*c.old_row : nullptr;
  const Row* new_row = c.new_row ? &*c.new_row : nullptr;
  switch (c.op) {
    case Op::Insert:
      return row_has_values(rule, rel, new_row, nullptr);
    case Op::Delete:
      return old_row == nullptr || row_has_values(rule, rel, old_row, old_row);
    case Op::Update:
      return old_row == nullptr || row_has_values(rule, rel, old_row, old_row) ||
             row_has_values(rule, rel, new_row, old_row);
    case Op::Truncate:
      break;
  }
  return true;
}

bool rule_matches(const Rule& rule, const Change& c) {
  if (!rule.fires_on(c.op)) return false;
  if (c.op == Op::Update && !update_matches(rule, c)) return false;
  return when_matches(rule, c);
}

// ---------------------------------------------------------------------------------------
// Planning

// Collects one change's actions, producing each (kind, key) once.
class Planner {
 public:
  Planner(const Change& c, std::vector<Action>& out, std::vector<RenderFailure>* failures,
          std::vector<PublishedKey>* published)
      : change_(c), out_(out), begin_(out.size()), failures_(failures), published_(published) {
    rows_.relation = c.relation.get();
    rows_.old_row = c.old_row ? &*c.old_row : nullptr;
    rows_.new_row = c.new_row ? &*c.new_row : nullptr;
  }

  void plan(const Rule& rule, std::uint32_t index) {
    rule_ = &rule;
    index_ = index;
    if (change_.op == Op::Truncate) {
      plan_truncate(rule, index, out_, begin_, std::to_string(change_.commit_lsn));
      if (published_ != nullptr) publish_truncate(rule, index, *published_);
      return;
    }
    RenderOptions plain{rule.null_literal ? &*rule.null_literal : nullptr, false};
    RenderOptions glob{plain.null_literal, true};
    for (const auto& t : rule.deletes) render(t, ActionKind::Delete, plain);
    for (const auto& t : rule.patterns) render(t, ActionKind::DeletePattern, glob);
    for (const auto& t : rule.bumps) render(t, ActionKind::BumpVersion, plain);
    for (const auto& f : rule.fragments) render(f, plain);
    if (published_ == nullptr) return;
    for (std::uint32_t d = 0; d < rule.publish.size(); ++d) {
      for (const auto& t : rule.publish[d].keys) {
        render_each(t, plain, rule.key_prefix, [&](std::string key) {
          published_->push_back(PublishedKey{index_, d, std::move(key), false});
        });
      }
    }
  }

  // TRUNCATE sends no rows: a consumer gets each templated key as a glob over final keys
  // (placeholders → '*'), as the deletes do, and constant keys as keys.
  static void publish_truncate(const Rule& rule, std::uint32_t index,
                               std::vector<PublishedKey>& out) {
    for (std::uint32_t d = 0; d < rule.publish.size(); ++d) {
      const auto add = [&](std::string key, bool pattern) {
        out.push_back(PublishedKey{index, d, std::move(key), pattern});
      };
      const auto add_template = [&](const KeyTemplate& t) {
        if (t.has_placeholders()) {
          add(rule.pattern_prefix + t.as_pattern(true), true);
        } else {
          add(rule.key_prefix + t.as_pattern(false), false);
        }
      };
      if (!rule.publish[d].keys.empty()) {
        for (const auto& t : rule.publish[d].keys) add_template(t);
        continue;
      }
      for (const auto& t : rule.deletes) add_template(t);
      for (const auto& f : rule.fragments) {
        auto [key, pattern] = truncate_fragment(rule, f);
        add(std::move(key), pattern);
      }
    }
  }

  // A fragment's key without rows: the key itself when vary_on is constant, else a
  // pattern over every fragment of that name. True: a pattern.
  static std::pair<std::string, bool> truncate_fragment(const Rule& rule, const Fragment& f) {
    const bool constant = std::none_of(f.vary_on.begin(), f.vary_on.end(),
                                       [](const KeyTemplate& t) { return t.has_placeholders(); });
    if (constant) {
      std::vector<std::string> values;
      for (const auto& t : f.vary_on) values.push_back(t.as_pattern(false));
      return {rule.key_prefix + django_fragment_key(f.name, values), false};
    }
    std::string pattern = rule.pattern_prefix;
    append_glob_escaped(pattern, "template.cache." + f.name + ".");
    return {pattern + "*", true};
  }

  // What a TRUNCATE produces for a rule: placeholders become '*'. Literal text of delete
  // and bump templates is a literal key part (escaped); delete_pattern text is a glob.
  static void plan_truncate(const Rule& rule, std::uint32_t index, std::vector<Action>& out,
                            std::size_t begin, const std::string& lsn, bool with_versions = true) {
    const auto add = [&](ActionKind kind, std::string key, std::string value) {
      emit(out, begin,
           Action{kind, index, std::move(key), std::move(value), rule.redelete_after_ms,
                  rule.after_replay});
    };
    const auto as_pattern = [&](const KeyTemplate& t, bool escape_literals) {
      return rule.pattern_prefix + t.as_pattern(escape_literals);
    };
    for (const auto& t : rule.deletes) {
      if (t.has_placeholders()) {
        add(ActionKind::DeletePattern, as_pattern(t, true), {});
      } else {
        add(ActionKind::Delete, rule.key_prefix + t.as_pattern(false), {});
      }
    }
    for (const auto& t : rule.patterns) add(ActionKind::DeletePattern, as_pattern(t, false), {});
    // A templated version key cannot be SET by pattern: it is deleted, and the application
    // falls back to its default version for those keys.
    for (const auto& t : rule.bumps) {
      if (!with_versions) break;
      if (t.has_placeholders()) {
        add(ActionKind::DeletePattern, as_pattern(t, true), {});
      } else {
        add(ActionKind::BumpVersion, rule.key_prefix + t.as_pattern(false), lsn);
      }
    }
    for (const auto& f : rule.fragments) {
      auto [key, pattern] = truncate_fragment(rule, f);
      add(pattern ? ActionKind::DeletePattern : ActionKind::Delete, std::move(key), {});
    }
  }

 private:
  static void emit(std::vector<Action>& out, std::size_t begin, Action action) {
    for (std::size_t i = begin; i < out.size(); ++i) {
      if (out[i].kind == action.kind && out[i].key == action.key) {
        out[i].redelete_after_ms = std::max(out[i].redelete_after_ms, action.redelete_after_ms);
        out[i].after_replay = out[i].after_replay || action.after_replay;
        return;
      }
    }
    out.push_back(std::move(action));
  }

  void fail(std::string_view reason, std::string_view column) {
    if (failures_ != nullptr) {
      failures_->push_back({index_, std::string(reason), std::string(column)});
    }
  }

  // Calls render_one(rows) for each row image the change has: plain {col} renders the new
  // and the old row; a template that pins images renders once, where they exist.
  // True when every plain {col} of these templates has the same known value in the old
  // and the new row: rendering the old image would only repeat the new one's keys. An
  // old value that was not sent (Absent) is unknown, so the old image is still rendered
  // (and reports the failure).
  template <typename Templates>
  [[nodiscard]] bool images_agree(const Templates& templates) const {
    if (rows_.old_row == nullptr || rows_.new_row == nullptr) return false;
    for (const KeyTemplate& t : templates) {
      for (const auto& p : t.placeholders()) {
        if (p.image != RowImage::Current) continue;
        const int i = rows_.relation->column_index(p.column);
        if (i < 0) return false;
        const Value& o = (*rows_.old_row)[static_cast<std::size_t>(i)];
        const Value& n = (*rows_.new_row)[static_cast<std::size_t>(i)];
        if (o.kind != Value::Kind::Text && o.kind != Value::Kind::Null) return false;
        if (n.kind == Value::Kind::Unchanged) continue;  // rendered from the old value
        if (o.kind != n.kind || o.text != n.text) return false;
      }
    }
    return true;
  }

  template <typename RenderOne>
  void for_each_image(bool uses_current, bool uses_old, bool uses_new, std::string_view old_column,
                      RenderOne&& render_one, bool images_agree = false) {
    RenderRows rows = rows_;
    if (uses_old && rows.old_row == nullptr) {
      // An insert never has one; an update or delete should have, so that is a failure.
      if (change_.op != Op::Insert) fail("old_row_unavailable", old_column);
      return;
    }
    if (uses_new && rows.new_row == nullptr) return;
    if (!uses_current) {
      rows.current = rows.new_row != nullptr ? RowImage::New : RowImage::Old;
      render_one(rows);
      return;
    }
    if (rows.new_row != nullptr) {
      rows.current = RowImage::New;
      render_one(rows);
      if (images_agree) return;
    }
    if (rows.old_row != nullptr) {
      rows.current = RowImage::Old;
      render_one(rows);
    } else if (rows.new_row == nullptr) {
      fail("old_row_unavailable", old_column);  // a delete without a previous row
    }
  }

  static std::string_view first_column(const KeyTemplate& t, RowImage image) {
    for (const auto& p : t.placeholders()) {
      if (p.image == image) return p.column;
    }
    return {};
  }

  // Calls on_key(key) for each image's rendering of t, reporting templates that fail.
  template <typename OnKey>
  void render_each(const KeyTemplate& t, const RenderOptions& options, const std::string& prefix,
                   OnKey&& on_key) {
    const bool current = t.uses(RowImage::Current);
    const bool old = t.uses(RowImage::Old);
    const std::string_view column = first_column(t, old ? RowImage::Old : RowImage::Current);
    const bool agree =
        current && images_agree(std::array<std::reference_wrapper<const KeyTemplate>, 1>{t});
    for_each_image(
        current, old, t.uses(RowImage::New), column,
        [&](const RenderRows& rows) {
          std::string key = prefix;
          TemplateSkip skip;
          if (!t.render(rows, options, key, skip)) {
            fail(skip.reason, skip.column);
            return;
          }
          on_key(std::move(key));
        },
        agree);
  }

  void render(const KeyTemplate& t, ActionKind kind, const RenderOptions& options) {
    const std::string& prefix =
        kind == ActionKind::DeletePattern ? rule_->pattern_prefix : rule_->key_prefix;
    render_each(t, options, prefix, [&](std::string key) {
      std::string value;
      if (kind == ActionKind::BumpVersion) value = std::to_string(change_.commit_lsn);
      if (kind == ActionKind::Delete) publish_deleted(key);
      emit(out_, begin_,
           Action{kind, index_, std::move(key), std::move(value), rule_->redelete_after_ms,
                  rule_->after_replay});
    });
  }

  // A publish entry without `keys:` publishes what the rule deletes.
  void publish_deleted(const std::string& key) {
    if (published_ == nullptr) return;
    for (std::uint32_t d = 0; d < rule_->publish.size(); ++d) {
      if (rule_->publish[d].keys.empty())
        published_->push_back(PublishedKey{index_, d, key, false});
    }
  }

  void render(const Fragment& f, const RenderOptions& options) {
    std::string_view column;
    for (const auto& t : f.vary_on) {
      if (column.empty()) column = first_column(t, f.uses_old ? RowImage::Old : RowImage::Current);
    }
    const bool agree = f.uses_current && images_agree(f.vary_on);
    for_each_image(
        f.uses_current, f.uses_old, f.uses_new, column,
        [&](const RenderRows& rows) {
          values_.clear();
          for (const auto& t : f.vary_on) {
            TemplateSkip skip;
            values_.emplace_back();
            if (!t.render(rows, options, values_.back(), skip)) {
              fail(skip.reason, skip.column);
              return;
            }
          }
          // With key_format plain the fragment key is used as Django builds it before
          // make_key, for applications whose KEY_FUNCTION adds no prefix.
          std::string key = rule_->key_prefix + django_fragment_key(f.name, values_);
          publish_deleted(key);
          emit(out_, begin_,
               Action{ActionKind::Delete,
                      index_,
                      std::move(key),
                      {},
                      rule_->redelete_after_ms,
                      rule_->after_replay});
        },
        agree);
  }

  const Change& change_;
  std::vector<Action>& out_;
  std::size_t begin_;
  std::vector<RenderFailure>* failures_;
  std::vector<PublishedKey>* published_;
  RenderRows rows_;
  const Rule* rule_ = nullptr;
  std::uint32_t index_ = 0;
  std::vector<std::string> values_;
};

}  // namespace

// ---------------------------------------------------------------------------------------
// RuleSet

RuleSet::RuleSet() : tables_(std::make_unique<TableIndex>()) {}
RuleSet::~RuleSet() = default;
RuleSet::RuleSet(RuleSet&&) noexcept = default;
RuleSet& RuleSet::operator=(RuleSet&&) noexcept = default;

namespace {

// Rules feed one event per stream and transaction, so they must agree on its length.
void check_stream_lengths(const std::vector<std::unique_ptr<Rule>>& rules, Diagnostics& diags) {
  std::map<std::string, const Rule*> first;
  std::map<std::string, std::size_t> first_entry;
  for (const auto& rule : rules) {
    for (std::size_t d = 0; d < rule->info.publish.size(); ++d) {
      const PublishDestination& dest = rule->info.publish[d];
      if (dest.kind != PublishKind::Stream) continue;
      const auto [it, inserted] = first.emplace(dest.name, rule.get());
      if (inserted) {
        first_entry[dest.name] = d;
        continue;
      }
      const Rule& other = *it->second;
      const std::size_t od = first_entry[dest.name];
      if (other.info.publish[od].maxlen == dest.maxlen) continue;
      diags.add(rule->info.file, rule->publish[d].line, rule->publish[d].column,
                "stream '" + dest.name + "' has maxlen " + std::to_string(dest.maxlen) +
                    " here but " + std::to_string(other.info.publish[od].maxlen) + " in rule '" +
                    other.info.name + "' (" + other.info.file + ":" +
                    std::to_string(other.publish[od].line) + "): give every rule the same maxlen");
    }
  }
}

}  // namespace

RuleSet RuleSet::load(const std::vector<RuleSource>& files, Diagnostics& diags) {
  RuleSet set;
  std::map<std::string, std::pair<std::string, int>> names;
  for (const auto& file : files) {
    FileLoader(file, diags, names).load(set.rules_);
  }
  for (std::uint32_t i = 0; i < set.rules_.size(); ++i) {
    const RuleInfo& info = set.rules_[i]->info;
    set.tables_->rules[{info.schema, info.table}].push_back(i);
  }
  check_stream_lengths(set.rules_, diags);
  return set;
}

void RuleSet::plan(const Change& change, std::vector<Action>& out,
                   std::vector<RenderFailure>* failures,
                   std::vector<PublishedKey>* published) const {
  if (!change.relation) return;
  plan_table(change.relation->schema, change.relation->name, change, out, failures, published);
}

void RuleSet::plan_table(std::string_view schema, std::string_view table, const Change& change,
                         std::vector<Action>& out, std::vector<RenderFailure>* failures,
                         std::vector<PublishedKey>* published) const {
  if (!change.relation || !tables_) return;
  const auto it = tables_->rules.find(std::pair<std::string_view, std::string_view>(schema, table));
  if (it == tables_->rules.end()) return;
  Planner planner(change, out, failures, published);
  for (const std::uint32_t index : it->second) {
    const Rule& rule = *rules_[index];
    if (rule_matches(rule, change)) planner.plan(rule, index);
  }
}

bool RuleSet::watches(std::string_view schema, std::string_view table) const {
  return tables_ && tables_->rules.find(std::pair<std::string_view, std::string_view>(
                        schema, table)) != tables_->rules.end();
}

std::size_t RuleSet::size() const { return rules_.size(); }

const RuleInfo& RuleSet::rule(std::uint32_t index) const { return rules_.at(index)->info; }

std::set<std::string> RuleSet::rule_columns(std::uint32_t index) const {
  const Rule& rule = *rules_.at(index);
  std::set<std::string> columns(rule.changed.begin(), rule.changed.end());
  columns.insert(rule.ignore_changes.begin(), rule.ignore_changes.end());
  for (const auto& [col, value] : rule.when) columns.insert(col);
  const auto add_template = [&](const KeyTemplate& t) {
    for (const auto& p : t.placeholders()) columns.insert(p.column);
  };
  for (const auto* list : {&rule.deletes, &rule.patterns, &rule.bumps}) {
    for (const auto& t : *list) add_template(t);
  }
  for (const auto& f : rule.fragments) {
    for (const auto& t : f.vary_on) add_template(t);
  }
  for (const auto& p : rule.publish) {
    for (const auto& t : p.keys) add_template(t);
  }
  return columns;
}

std::vector<TableNeeds> RuleSet::table_needs() const {
  std::map<std::pair<std::string, std::string>, TableNeeds> tables;
  for (std::uint32_t i = 0; i < rules_.size(); ++i) {
    const auto& rule = rules_[i];
    TableNeeds& needs = tables[{rule->info.schema, rule->info.table}];
    needs.schema = rule->info.schema;
    needs.name = rule->info.table;
    for (const Op op : {Op::Insert, Op::Update, Op::Delete, Op::Truncate}) {
      if (rule->fires_on(op)) needs.ops.insert(op);
    }
    const bool on_update = rule->fires_on(Op::Update);
    const bool sees_old = on_update || rule->fires_on(Op::Delete);
    needs.columns.merge(rule_columns(i));
    if (on_update && (!rule->changed.empty() || !rule->ignore_changes.empty())) {
      needs.needs_old_row = true;
    }
    if (sees_old && !rule->when.empty()) needs.needs_old_row = true;
    const auto add_template = [&](const KeyTemplate& t) {
      for (const auto& p : t.placeholders()) {
        if (p.image == RowImage::Old) needs.needs_old_row = true;
        if (p.image == RowImage::Current && sees_old) needs.old_value_columns.insert(p.column);
      }
    };
    for (const auto* list : {&rule->deletes, &rule->patterns, &rule->bumps}) {
      for (const auto& t : *list) add_template(t);
    }
    for (const auto& f : rule->fragments) {
      for (const auto& t : f.vary_on) add_template(t);
    }
    for (const auto& p : rule->publish) {
      for (const auto& t : p.keys) add_template(t);
    }
  }
  std::vector<TableNeeds> out;
  for (auto& [key, needs] : tables) out.push_back(std::move(needs));
  return out;
}

std::vector<Action> RuleSet::all_keys_as_patterns() const {
  std::vector<Action> out;
  for (std::uint32_t i = 0; i < rules_.size(); ++i) {
    Planner::plan_truncate(*rules_[i], i, out, 0, {});
  }
  return out;
}

std::vector<Action> RuleSet::rule_keys_as_patterns(std::uint32_t index) const {
  std::vector<Action> out;
  Planner::plan_truncate(*rules_.at(index), index, out, 0, {});
  return out;
}

std::vector<Action> RuleSet::patterns_of(std::uint32_t rule) const {
  std::vector<Action> out;
  if (rule < rules_.size())
    Planner::plan_truncate(*rules_[rule], rule, out, 0, {}, /*with_versions=*/false);
  return out;
}

}  // namespace walbust
