#include "walbust/core/batch_dedup.h"

#include <functional>
#include <string_view>

namespace walbust {

void DeleteDeduplicator::scan(const std::vector<const Action*>& actions) {
  repeated_.assign(actions.size(), 0);
  // Open addressing over indices into `actions`, at most half full: one pass, no
  // allocation once the table has grown to the largest batch seen.
  std::size_t size = 16;
  while (size < actions.size() * 2) size <<= 1;
  table_.assign(size, kEmpty);
  const std::size_t mask = size - 1;
  const std::hash<std::string_view> hash;
  // Each key's slot holds the latest Delete or SET of it: a Delete is repeated only when
  // that is a Delete.
  for (std::size_t i = 0; i < actions.size(); ++i) {
    const Action& a = *actions[i];
    if (a.kind != ActionKind::Delete && a.kind != ActionKind::BumpVersion) continue;
    for (std::size_t slot = hash(a.key) & mask;; slot = (slot + 1) & mask) {
      if (table_[slot] == kEmpty) {
        table_[slot] = static_cast<std::uint32_t>(i);
        break;
      }
      const Action& latest = *actions[table_[slot]];
      if (latest.key != a.key) continue;
      if (a.kind == ActionKind::Delete && latest.kind == ActionKind::Delete) {
        repeated_[i] = 1;
      } else {
        table_[slot] = static_cast<std::uint32_t>(i);
      }
      break;
    }
  }
}

}  // namespace walbust
