#include "state_writer.h"

#include <spdlog/spdlog.h>

#include "signals.h"

namespace walbust {

StateWriter::StateWriter(const StateStore& store) : store_(store), thread_([this] { run(); }) {}

StateWriter::~StateWriter() { stop(); }

void StateWriter::submit(const SlotState& state) {
  {
    std::lock_guard lock(mu_);
    pending_ = state;
    pending_seq_ = next_seq_++;
  }
  cv_.notify_one();
}

void StateWriter::save_now(const SlotState& state) {
  std::uint64_t seq = 0;
  {
    std::lock_guard lock(mu_);
    pending_.reset();  // superseded
    seq = next_seq_++;
  }
  write(state, seq);
}

void StateWriter::write(const SlotState& state, std::uint64_t seq) {
  std::lock_guard lock(write_mu_);
  // A state taken by the writer thread just before a save_now() must not overwrite it.
  if (seq <= written_seq_) return;
  store_.save(state);
  written_seq_ = seq;
}

void StateWriter::stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void StateWriter::run() {
  Signals::begin_worker_thread("state writer");
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || pending_.has_value(); });
    if (pending_) {
      const SlotState state = *pending_;
      const std::uint64_t seq = pending_seq_;
      pending_.reset();
      // Written without holding mu_: the source thread's submit() must never wait for
      // two fsyncs (a replication stream stalled for tens of milliseconds every status
      // update on a slow disk).
      lock.unlock();
      try {
        write(state, seq);
        warned_ = false;
      } catch (const std::exception& e) {
        // Losing the state file only weakens gap detection; it must not stop invalidation.
        if (!warned_) spdlog::warn("{}", e.what());
        warned_ = true;
      }
      lock.lock();
    }
    if (stop_ && !pending_) return;
  }
}

}  // namespace walbust
