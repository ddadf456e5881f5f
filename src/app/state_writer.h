#pragma once
// Writes the state file off the replication thread. Each save fsyncs twice (file and
// directory); on a busy disk that can take tens of milliseconds, which on the source
// thread would stall every delete behind it. Periodic updates only record progress, so
// they are handed to this thread and coalesced: only the newest state is written.
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "walbust/state_store.h"

namespace walbust {

class StateWriter {
 public:
  explicit StateWriter(const StateStore& store);
  ~StateWriter();

  // Queues `state` for writing, replacing any state not yet written.
  void submit(const SlotState& state);
  // Writes `state` now, on the calling thread (slot creation, shutdown). Throws
  // std::runtime_error on failure.
  void save_now(const SlotState& state);
  // Writes what is queued and stops the thread.
  void stop();

 private:
  void run();

  const StateStore& store_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<SlotState> pending_;
  bool stop_ = false;
  bool warned_ = false;
  std::thread thread_;
};

}  // namespace walbust
