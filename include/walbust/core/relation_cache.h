#pragma once
// Relations (tables) announced by the stream, by OID. A Relation message replaces any
// earlier entry for its OID, so schema changes mid-stream are followed.
#include <cstdint>
#include <memory>
#include <unordered_map>

#include "walbust/core/change.h"

namespace walbust {

class RelationCache {
 public:
  void put(Relation relation);
  // nullptr when the OID was never announced.
  [[nodiscard]] std::shared_ptr<const Relation> find(std::uint32_t oid) const;
  [[nodiscard]] std::size_t size() const { return relations_.size(); }
  void clear() { relations_.clear(); }

 private:
  std::unordered_map<std::uint32_t, std::shared_ptr<const Relation>> relations_;
};

}  // namespace walbust
