#pragma once
// The pure half of `walbust audit` (README "Adopting walbust"): which family a Redis key
// belongs to, whether some rule could produce it, and a streaming aggregate of families
// whose memory is bounded however many keys are scanned. No I/O: the command feeds keys
// as SCAN returns them.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "walbust/core/rules.h"

namespace walbust {

// The key with, in this order, every UUID (8-4-4-4-12 hex), every run of exactly 32 hex
// characters (an MD5) and every maximal run of digits replaced by '*'. Works on bytes:
// any key, UTF-8 or not, has a family.
[[nodiscard]] std::string key_family(std::string_view key);

// Redis glob matching as KEYS/SCAN MATCH do it: * ? [abc] [^a-z] and \ escapes, on bytes.
[[nodiscard]] bool glob_match(std::string_view pattern, std::string_view key);

// Every key the rules of one target could produce: each template of delete,
// delete_pattern, bump_version and fragment after key_format, with placeholders read as
// '*', exactly as TRUNCATE renders them.
class CoverageIndex {
 public:
  // Rules for `target` (rules without `targets:` apply to every target).
  [[nodiscard]] static CoverageIndex from_rules(const RuleSet& rules, std::string_view target);

  // Indexes of the rules that could produce `key`, ascending, replacing `out`'s content.
  void covering_rules(std::string_view key, std::vector<std::uint32_t>& out) const;

  [[nodiscard]] std::size_t patterns() const { return globs_.size() + literals_.size(); }

 private:
  struct Glob {
    std::string pattern;
    std::string prefix;  // literal text before the first glob character: a cheap pre-check
    std::vector<std::uint32_t> rules;
  };
  std::unordered_map<std::string, std::vector<std::uint32_t>> literals_;
  std::vector<Glob> globs_;
};

struct FamilyStats {
  std::string family;
  std::uint64_t keys = 0;
  std::uint64_t no_ttl = 0;
  bool covered = true;  // every key of the family seen so far is covered
  // The smallest key (byte order) of the family; when some key is not covered, the
  // smallest uncovered one, so an uncovered family's example is a key no rule produces.
  std::string example;
  std::vector<std::uint32_t> rules;  // every rule covering some key, ascending
  bool overflow = false;             // the bucket of families beyond the cap
};

// Families aggregated as keys stream in. At most `max_families` distinct families are
// kept; keys of further families are added to one overflow bucket (family "(other)"),
// so memory is bounded by the cap and the longest key, never by the number of keys.
class FamilyAggregator {
 public:
  static constexpr std::size_t kDefaultMaxFamilies = 10000;
  static constexpr std::string_view kOverflowFamily = "(other)";

  explicit FamilyAggregator(std::size_t max_families = kDefaultMaxFamilies);

  void add(std::string_view key, bool has_ttl, const std::vector<std::uint32_t>& covering_rules);

  [[nodiscard]] std::uint64_t scanned() const { return scanned_; }
  [[nodiscard]] std::size_t family_count() const;

  // Uncovered families first, then covered; each by keys descending, then by name; the
  // overflow bucket (if any) last in its group.
  [[nodiscard]] std::vector<FamilyStats> sorted() const;

 private:
  static void merge(FamilyStats& stats, std::string_view key, bool has_ttl,
                    const std::vector<std::uint32_t>& covering_rules);

  std::size_t max_families_;
  std::uint64_t scanned_ = 0;
  std::unordered_map<std::string, FamilyStats> families_;
  FamilyStats overflow_;
};

}  // namespace walbust
