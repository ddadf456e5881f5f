#pragma once
// Which deletes of a batch repeat a key deleted earlier in the same batch. Hot keys
// (a home page, a category list) appear in most changes, so a batch under load carries
// each of them many times; Redis needs to see each once. A table of indices reused from
// batch to batch costs no allocation per key, unlike a std::unordered_set of the keys,
// whose node allocations showed at the top of profiles.
#include <cstdint>
#include <vector>

#include "walbust/core/rules.h"

namespace walbust {

class DeleteDeduplicator {
 public:
  // After this, repeated(i) is true for a Delete action whose key an earlier Delete of
  // `actions` already has, with no version bump (SET) of that key in between: a delete
  // after a SET of its key must reach Redis, or the SET's key would survive it. Other
  // kinds are never marked. Scratch space is reused.
  void scan(const std::vector<const Action*>& actions);
  [[nodiscard]] bool repeated(std::size_t i) const { return repeated_[i] != 0; }

 private:
  static constexpr std::uint32_t kEmpty = 0xffffffffU;
  std::vector<std::uint32_t> table_;
  std::vector<char> repeated_;
};

}  // namespace walbust
