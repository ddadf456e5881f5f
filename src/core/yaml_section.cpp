#include "walbust/core/yaml_section.h"

#include <algorithm>
#include <vector>

#include "walbust/core/duration.h"

namespace walbust {
namespace {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string joined(std::initializer_list<std::string_view> words) {
  std::string list;
  for (auto w : words) list += (list.empty() ? "" : ", ") + std::string(w);
  return list;
}

}  // namespace

std::string yaml_key_text(const YAML::Node& key) {
  if (key.IsNull()) return "null";
  return key.IsScalar() ? key.Scalar() : std::string();
}

YamlSection::YamlSection(const std::string& file, const YAML::Node& node, std::string name,
                         Diagnostics& diags)
    : file_(file), node_(node), name_(std::move(name)), diags_(diags) {
  ok_ = node.IsMap();
  if (!ok_ && node.IsDefined() && !node.IsNull()) {
    diags_.add(file_, node, (name_.empty() ? std::string("this") : name_) + " must be a mapping");
  }
  if (!ok_) return;
  for (const auto& item : node_)
    entries_.try_emplace(yaml_key_text(item.first), Entry{item.first, item.second});
}

void YamlSection::allow_only(std::initializer_list<std::string_view> known) {
  if (!ok_) return;
  std::map<std::string, int, std::less<>> seen;
  for (const auto& item : node_) {
    const std::string key = yaml_key_text(item.first);
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      diags_.add(file_, item.first, unknown_key_message(key, known));
      entries_.erase(key);
    } else if (++seen[key] > 1) {
      diags_.add(file_, item.first, "duplicate key '" + key + "'");
    }
  }
}

std::string YamlSection::unknown_key_message(const std::string& key,
                                             std::initializer_list<std::string_view> known) const {
  std::string message = "unknown key '" + key + "'";
  if (!name_.empty()) message += " in " + name_;
  for (const auto candidate : known) {
    if (edit_distance(key, candidate) <= 2)
      return message + " (did you mean '" + std::string(candidate) + "'?)";
  }
  return message + " (expected one of: " + joined(known) + ")";
}

const YamlSection::Entry* YamlSection::find(std::string_view key) const {
  const auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

YAML::Node YamlSection::get(std::string_view key) const {
  const Entry* e = find(key);
  return e != nullptr ? e->value : YAML::Node(YAML::NodeType::Undefined);
}

std::string YamlSection::where(std::string_view key) const {
  return name_.empty() ? std::string(key) : name_ + "." + std::string(key);
}

void YamlSection::string(std::string_view key, std::string& out) const {
  const YAML::Node n = get(key);
  if (!n.IsDefined() || n.IsNull()) return;
  if (!n.IsScalar()) {
    error(n, where(key) + " must be a string");
    return;
  }
  out = n.Scalar();
}

void YamlSection::boolean(std::string_view key, bool& out) const {
  const YAML::Node n = get(key);
  if (!n.IsDefined() || n.IsNull()) return;
  bool v = false;
  if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v)) {
    error(n, where(key) + " must be true or false");
    return;
  }
  out = v;
}

void YamlSection::size(std::string_view key, std::size_t& out, std::size_t min,
                       std::size_t max) const {
  const YAML::Node n = get(key);
  if (!n.IsDefined() || n.IsNull()) return;
  long long v = 0;
  if (!n.IsScalar() || !YAML::convert<long long>::decode(n, v) || v < static_cast<long long>(min) ||
      v > static_cast<long long>(max)) {
    error(n, where(key) + " must be an integer from " + std::to_string(min) + " to " +
                 std::to_string(max));
    return;
  }
  out = static_cast<std::size_t>(v);
}

void YamlSection::duration(std::string_view key, std::chrono::milliseconds& out,
                           std::chrono::milliseconds min) const {
  const YAML::Node n = get(key);
  if (!n.IsDefined() || n.IsNull()) return;
  const auto d = n.IsScalar() ? parse_duration(n.Scalar()) : std::nullopt;
  if (!d) {
    error(n, where(key) + " must be a duration with a unit, e.g. 500ms, 10s, 5m, 1h");
    return;
  }
  if (*d < min) {
    error(n, where(key) + " must be at least " + format_duration(min));
    return;
  }
  out = *d;
}

void YamlSection::choice(std::string_view key, std::string& out,
                         std::initializer_list<std::string_view> options) const {
  const YAML::Node n = get(key);
  if (!n.IsDefined() || n.IsNull()) return;
  if (!n.IsScalar() || std::find(options.begin(), options.end(), n.Scalar()) == options.end()) {
    error(n, where(key) + " must be one of: " + joined(options));
    return;
  }
  out = n.Scalar();
}

}  // namespace walbust
