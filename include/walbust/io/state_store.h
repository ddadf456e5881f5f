#pragma once
// The state file in state_dir: which database and slot walbust streams from and the last
// LSN it acknowledged. It is how a missing slot is recognised as a gap (README "Guarantees and
// failure modes") rather than a first start. Written atomically: temp file, fsync, rename, fsync of
// the directory.
#include <optional>
#include <string>

#include "walbust/core/lsn.h"

namespace walbust {

struct SlotState {
  std::string system_identifier;
  std::string database;
  std::string slot;
  Lsn acknowledged_lsn = kInvalidLsn;
};

class StateStore {
 public:
  StateStore(std::string state_dir, std::string slot);

  // nullopt when there is no state file yet. Throws std::runtime_error when the file
  // exists but cannot be read or parsed.
  [[nodiscard]] std::optional<SlotState> load() const;
  // Throws std::runtime_error with the path on failure.
  void save(const SlotState& state) const;
  void remove() const;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
};

}  // namespace walbust
