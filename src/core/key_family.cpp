#include "walbust/core/key_family.h"

#include <algorithm>

namespace walbust {
namespace {

bool is_hex(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

// 8-4-4-4-12 hex digits at `at`, not glued to more hex digits on either side (a longer
// hex run is some other identifier, not a UUID).
bool uuid_at(std::string_view s, std::size_t at) {
  static constexpr std::string_view kShape = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
  if (s.size() - at < kShape.size()) return false;
  if (at > 0 && is_hex(s[at - 1])) return false;
  for (std::size_t i = 0; i < kShape.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[at + i]);
    if (kShape[i] == '-' ? c != '-' : !is_hex(c)) return false;
  }
  const std::size_t end = at + kShape.size();
  return end == s.size() || !is_hex(s[end]);
}

std::string replace_uuids(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    if (uuid_at(s, i)) {
      out += '*';
      i += 36;
    } else {
      out += s[i++];
    }
  }
  return out;
}

// Replaces every maximal run of bytes satisfying `in_run` whose length passes `replace`.
template <typename InRun, typename Replace>
std::string replace_runs(std::string_view s, InRun in_run, Replace replace) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    std::size_t end = i;
    while (end < s.size() && in_run(static_cast<unsigned char>(s[end]))) ++end;
    if (end == i) {
      out += s[i++];
      continue;
    }
    if (replace(end - i)) {
      out += '*';
    } else {
      out.append(s.substr(i, end - i));
    }
    i = end;
  }
  return out;
}

// One pattern token at `p` against byte `c`: returns whether it matches and moves `p`
// past the token. Brackets follow Redis: ranges may be reversed, '\' escapes inside,
// an unclosed '[' extends to the end of the pattern.
bool token_matches(std::string_view pat, std::size_t& p, unsigned char c) {
  if (pat[p] == '?') {
    ++p;
    return true;
  }
  if (pat[p] == '\\' && p + 1 < pat.size()) {
    p += 2;
    return static_cast<unsigned char>(pat[p - 1]) == c;
  }
  if (pat[p] != '[') return static_cast<unsigned char>(pat[p++]) == c;
  ++p;
  const bool negate = p < pat.size() && pat[p] == '^';
  if (negate) ++p;
  bool match = false;
  while (p < pat.size() && pat[p] != ']') {
    if (pat[p] == '\\' && p + 1 < pat.size()) {
      match = match || static_cast<unsigned char>(pat[p + 1]) == c;
      p += 2;
    } else if (p + 2 < pat.size() && pat[p + 1] == '-') {
      auto lo = static_cast<unsigned char>(pat[p]);
      auto hi = static_cast<unsigned char>(pat[p + 2]);
      if (lo > hi) std::swap(lo, hi);
      match = match || (c >= lo && c <= hi);
      p += 3;
    } else {
      match = match || static_cast<unsigned char>(pat[p]) == c;
      ++p;
    }
  }
  if (p < pat.size()) ++p;  // the ']'
  return match != negate;
}

void add_rule(std::vector<std::uint32_t>& rules, std::uint32_t rule) {
  const auto at = std::lower_bound(rules.begin(), rules.end(), rule);
  if (at == rules.end() || *at != rule) rules.insert(at, rule);
}

}  // namespace

std::string key_family(std::string_view key) {
  const std::string no_uuids = replace_uuids(key);
  const std::string no_md5 =
      replace_runs(no_uuids, is_hex, [](std::size_t len) { return len == 32; });
  return replace_runs(no_md5, is_digit, [](std::size_t) { return true; });
}

bool glob_match(std::string_view pat, std::string_view key) {
  // Two cursors with one backtracking point: every token but '*' matches exactly one
  // byte, so retrying from the last '*' finds a match whenever one exists.
  std::size_t p = 0, k = 0;
  std::size_t star = std::string_view::npos, star_key = 0;
  while (k < key.size()) {
    if (p < pat.size() && pat[p] == '*') {
      star = ++p;
      star_key = k;
      continue;
    }
    std::size_t next = p;
    if (p < pat.size() && token_matches(pat, next, static_cast<unsigned char>(key[k]))) {
      p = next;
      ++k;
      continue;
    }
    if (star == std::string_view::npos) return false;
    p = star;
    k = ++star_key;
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

CoverageIndex CoverageIndex::from_rules(const RuleSet& rules, std::string_view target) {
  CoverageIndex index;
  for (std::uint32_t r = 0; r < rules.size(); ++r) {
    const auto& targets = rules.rule(r).targets;
    if (!targets.empty() && std::find(targets.begin(), targets.end(), target) == targets.end())
      continue;
    for (const Action& a : rules.rule_keys_as_patterns(r)) {
      if (a.kind != ActionKind::DeletePattern) {
        add_rule(index.literals_[a.key], r);
        continue;
      }
      auto it = std::find_if(index.globs_.begin(), index.globs_.end(),
                             [&](const Glob& g) { return g.pattern == a.key; });
      if (it == index.globs_.end()) {
        Glob g{a.key, a.key.substr(0, a.key.find_first_of("*?[\\")), {}};
        it = index.globs_.insert(index.globs_.end(), std::move(g));
      }
      add_rule(it->rules, r);
    }
  }
  return index;
}

void CoverageIndex::covering_rules(std::string_view key, std::vector<std::uint32_t>& out) const {
  out.clear();
  if (const auto it = literals_.find(std::string(key)); it != literals_.end()) out = it->second;
  for (const Glob& g : globs_) {
    if (key.substr(0, g.prefix.size()) != g.prefix || !glob_match(g.pattern, key)) continue;
    for (const std::uint32_t r : g.rules) add_rule(out, r);
  }
}

FamilyAggregator::FamilyAggregator(std::size_t max_families) : max_families_(max_families) {
  overflow_.family = std::string(kOverflowFamily);
  overflow_.overflow = true;
}

std::size_t FamilyAggregator::family_count() const {
  return families_.size() + (overflow_.keys > 0 ? 1 : 0);
}

void FamilyAggregator::merge(FamilyStats& stats, std::string_view key, bool has_ttl,
                             const std::vector<std::uint32_t>& covering_rules) {
  // The example is the smallest key of its kind (uncovered if any key is), so the report
  // does not depend on the order SCAN returns keys in.
  const bool covered = !covering_rules.empty();
  if (stats.keys == 0 || (stats.covered && !covered) ||
      (stats.covered == covered && key < stats.example)) {
    stats.example = std::string(key);
  }
  ++stats.keys;
  if (!has_ttl) ++stats.no_ttl;
  stats.covered = stats.covered && covered;
  for (const std::uint32_t r : covering_rules) add_rule(stats.rules, r);
}

void FamilyAggregator::add(std::string_view key, bool has_ttl,
                           const std::vector<std::uint32_t>& covering_rules) {
  ++scanned_;
  std::string family = key_family(key);
  auto it = families_.find(family);
  if (it == families_.end()) {
    if (families_.size() >= max_families_) {
      merge(overflow_, key, has_ttl, covering_rules);
      return;
    }
    it = families_.emplace(family, FamilyStats{}).first;
    it->second.family = std::move(family);
  }
  merge(it->second, key, has_ttl, covering_rules);
}

std::vector<FamilyStats> FamilyAggregator::sorted() const {
  std::vector<FamilyStats> out;
  out.reserve(family_count());
  for (const auto& [name, stats] : families_) out.push_back(stats);
  if (overflow_.keys > 0) out.push_back(overflow_);
  std::sort(out.begin(), out.end(), [](const FamilyStats& a, const FamilyStats& b) {
    if (a.covered != b.covered) return !a.covered;
    if (a.overflow != b.overflow) return !a.overflow;
    if (a.keys != b.keys) return a.keys > b.keys;
    return a.family < b.family;
  });
  return out;
}

}  // namespace walbust
