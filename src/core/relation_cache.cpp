#include "walbust/core/relation_cache.h"

namespace walbust {

void RelationCache::put(Relation relation) {
  const std::uint32_t oid = relation.oid;
  // A new object rather than an in-place update: changes already handed out keep the
  // schema they were decoded with.
  relations_[oid] = std::make_shared<const Relation>(std::move(relation));
}

std::shared_ptr<const Relation> RelationCache::find(std::uint32_t oid) const {
  const auto it = relations_.find(oid);
  return it == relations_.end() ? nullptr : it->second;
}

}  // namespace walbust
