#pragma once
// `walbust run`: the source side of the pipeline. Owns the replication connection,
// decodes and matches changes, hands actions to the sink workers through the bounded
// queue, and sends standby status updates with the position AckTracker allows.
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "run_stats.h"
#include "sink_worker.h"
#include "walbust/ack_tracker.h"
#include "walbust/action_queue.h"
#include "walbust/change_stream.h"
#include "walbust/config.h"
#include "walbust/pg_replication.h"
#include "walbust/rules.h"
#include "walbust/state_store.h"

namespace walbust {

class Replicator final : public ChangeHandler {
 public:
  Replicator(Config config, RuleSet rules, std::optional<Lsn> endpos);
  ~Replicator() override;

  // Runs until SIGTERM/SIGINT, --endpos, or a fatal error. Returns the exit code.
  int run();

 private:
  using Clock = std::chrono::steady_clock;

  // Connects, checks slot and state for gaps, and starts streaming. Throws PgError for
  // retryable failures; returns an exit code other than -1 when the run must end.
  int open_stream();
  int handle_gap(const std::string& what);
  // Reads until stop/endpos (returns) or a connection failure (throws PgError).
  void stream_loop();
  void shutdown(bool drain_fully);

  void on_begin(const TransactionBegin& begin) override;
  void on_change(const Change& change) override;
  void on_commit(const TransactionCommit& commit) override;

  // Pushes locally gathered items into the queue, sending status updates while the
  // queue is full. Returns false when asked to stop first.
  bool flush_local();
  void send_status(bool reply_requested = false);
  void save_state();
  void maybe_log_progress(Clock::time_point now);
  void maybe_reload();
  [[nodiscard]] bool stopping() const;
  void sleep_interruptibly(std::chrono::milliseconds delay);

  Config config_;
  std::shared_ptr<const RuleSet> rules_;
  std::optional<Lsn> endpos_;
  std::string pg_password_;

  RunStats stats_;
  AckTracker tracker_;
  ActionQueue queue_;
  std::vector<std::unique_ptr<SinkWorker>> sinks_;
  PgReplicationConnection conn_;
  ChangeStream stream_;
  StateStore state_;
  std::string system_id_;
  std::string database_;

  std::vector<QueueItem> local_;
  std::vector<Action> actions_;
  std::vector<RenderFailure> failures_;
  std::set<std::pair<std::uint32_t, std::string>> warned_failures_;
  bool skip_transaction_ = false;
  bool endpos_reached_ = false;
  int exit_code_ = 0;

  Lsn last_saved_lsn_ = kInvalidLsn;
  Clock::time_point next_status_{};
  Clock::time_point next_progress_{};
  Clock::time_point last_reply_request_{};
  struct Snapshot {
    std::uint64_t changes = 0, keys = 0, transactions = 0;
    Clock::time_point at{};
  } last_progress_;
};

}  // namespace walbust
