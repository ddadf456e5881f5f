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
  }
  cv_.notify_one();
}

void StateWriter::save_now(const SlotState& state) {
  std::lock_guard lock(mu_);
  pending_.reset();  // superseded
  store_.save(state);
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
  Signals::block_in_this_thread();
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || pending_.has_value(); });
    if (pending_) {
      const SlotState state = *pending_;
      pending_.reset();
      // The lock stays held while writing so save_now() cannot interleave; submit()
      // waits at most one write.
      try {
        store_.save(state);
        warned_ = false;
      } catch (const std::exception& e) {
        // Losing the state file only weakens gap detection; it must not stop invalidation.
        if (!warned_) spdlog::warn("{}", e.what());
        warned_ = true;
      }
    }
    if (stop_ && !pending_) return;
  }
}

}  // namespace walbust
