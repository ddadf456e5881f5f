#pragma once
// Writes the state file off the replication thread. Each save fsyncs twice (file and
// directory); on a busy disk that can take tens of milliseconds, which on the source
// thread would stall every delete behind it. Periodic updates only record progress, so
// they are handed to this thread and coalesced: only the newest state is written.
// submit() never waits for a write in progress: it only swaps the pending state.
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>

#include "walbust/io/state_store.h"

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

  // Writes `state` unless a newer one (higher sequence) was written already.
  void write(const SlotState& state, std::uint64_t seq);

  const StateStore& store_;
  std::mutex mu_;  // pending_, pending_seq_, next_seq_, stop_: held only briefly
  std::condition_variable cv_;
  std::optional<SlotState> pending_;
  std::uint64_t pending_seq_ = 0;
  std::uint64_t next_seq_ = 1;
  bool stop_ = false;
  std::mutex write_mu_;  // one write at a time; written_seq_
  std::uint64_t written_seq_ = 0;
  bool warned_ = false;
  std::thread thread_;
};

}  // namespace walbust
