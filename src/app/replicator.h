#pragma once
// `walbust run`: the source side of the pipeline. Owns the replication connection,
// decodes and matches changes, hands actions to each Redis target's SinkWorker, and sends
// standby status updates with the position AckTracker allows. Also
// drives what an operator sees: systemd notifications, health, progress lines, reloads.
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "replica_poller.h"
#include "run_metrics.h"
#include "sink_worker.h"
#include "slot_poller.h"
#include "state_writer.h"
#include "table_binder.h"
#include "walbust/core/ack_tracker.h"
#include "walbust/core/change_stream.h"
#include "walbust/core/events.h"
#include "walbust/core/read_window.h"
#include "walbust/core/replay_queue.h"
#include "walbust/core/rules.h"
#include "walbust/core/status_schedule.h"
#include "walbust/io/config.h"
#include "walbust/io/event_loop.h"
#include "walbust/io/metrics_server.h"
#include "walbust/io/pg_replication.h"
#include "walbust/io/state_store.h"
#include "walbust/io/systemd_notify.h"

namespace walbust {

class Replicator final : public ChangeHandler {
 public:
  Replicator(Config config, RuleSet rules, std::optional<Lsn> endpos);
  ~Replicator() override;

  // Runs until SIGTERM/SIGINT, --endpos, or a fatal error. Returns the exit code.
  int run();

 private:
  using Clock = std::chrono::steady_clock;
  struct Reconnect;  // backoff and outage state, defined in replicator.cpp

  // Metrics server, slot poller, rule binding, watchdog and the Redis targets.
  void start_workers();
  // Streams until stopped or a fatal error, reconnecting with backoff after each failure.
  void stream_with_reconnects();
  void report_streaming_again(Reconnect& reconnect);
  // Forgets the half-read transaction, then waits out the backoff (shorter for a standby).
  // False when asked to stop while handing on local actions.
  bool recover_from(const PgError& e, Reconnect& reconnect);
  void report_disconnect(const PgError& e, bool slot_in_use, bool during_outage);

  // Connects, checks slot and state for gaps, and starts streaming. Throws PgError for
  // retryable failures; returns an exit code >= 0 when the run must end.
  int open_stream();
  // An exit code >= 0 when the slot is invalidated, of the wrong kind or database, or the
  // publication is missing.
  int check_slot_and_publication(const std::optional<SlotInfo>& slot, const std::string& dbname);
  // A slot missing after walbust streamed from it is a gap; otherwise it is created (when
  // allowed) and `start` set to its position. An exit code >= 0 ends the run.
  int create_missing_slot(const std::optional<SlotState>& saved, Lsn& start);
  int handle_gap(const std::string& what);
  // status_interval, lowered to half of the server's wal_sender_timeout when shorter.
  void adapt_status_interval();
  // Reads until stop/endpos (returns) or a connection failure (throws PgError).
  void stream_loop();
  // Keepalive: walEnd may be acknowledged between transactions. False when asked to stop.
  bool on_keepalive(const ReplicationFrame& frame);
  // Nothing buffered: hands on gathered actions, drops a silent connection (throws PgError),
  // and waits for data or the next deadline. False when asked to stop.
  bool wait_for_data();
  void shutdown(bool drain_fully);

  void on_begin(const TransactionBegin& begin) override;
  void on_change(const Change& change) override;
  void on_commit(const TransactionCommit& commit) override;
  void on_relation(const Relation& relation) override;

  // Periodic duties, from every loop that may wait: status updates to PostgreSQL,
  // watchdog, readiness, progress lines and STATUS=.
  void tick();
  // Hands locally gathered items to the targets, serving the loop (status updates
  // included) while a target's backlog is full. Returns false when asked to stop first.
  bool flush_local();
  bool push_local(std::size_t target);
  // Moves event_actions_ to their targets' local queues.
  void queue_events();
  void send_status(bool reply_requested = false);
  // Asks a silent server for a reply; throws once it stayed silent for the receive timeout.
  void check_silence(Clock::time_point now);
  void save_state();
  void report_progress(Clock::time_point now);
  void maybe_reload();
  [[nodiscard]] bool stopping() const;
  [[nodiscard]] bool sinks_alive() const;
  [[nodiscard]] std::size_t queued() const;
  [[nodiscard]] std::size_t local_size() const;
  void sleep_interruptibly(std::chrono::milliseconds delay);
  // While frames keep coming the stream never waits in the loop: its sources (Redis
  // targets, slot poller, replica connections) get a round without waiting at least
  // every kBusyRoundInterval.
  void serve_sources_while_busy(Clock::time_point now);
  // Every wait of the stream in its loop, so each one restarts the clock above: one round,
  // or rounds until something for the stream (EventLoop::run_until). True when `fd` is
  // readable.
  enum class Rounds { One, UntilNews };
  bool serve_loop(Clock::time_point until, Rounds rounds, int fd = -1);
  [[nodiscard]] std::pair<bool, std::string> health() const;

  // Read replicas (replicator_replicas.cpp): deletes repeated once replicas replayed.
  // Checks every replica and starts the poller; an exit code >= 0 ends the run.
  int start_replicas();
  // Takes new replica positions and hands every transaction that may be repeated now to
  // the sinks (into local_), followed by a marker that confirms it.
  void release_replayed();
  // Steps of release_replayed: what the replicas reported, their lag metrics, and the
  // repeated deletes that are due, queued with one commit marker (false: none were due).
  bool take_replica_reports();
  void update_replica_lag(Clock::time_point now);
  void warn_replay_timeout(const ReplayQueue::Released& r, Clock::time_point now);
  bool queue_released_repeats(Clock::time_point now);
  // Ends the transaction in the replay queue and asks the replicas for its position.
  void hold_for_replay(AckTracker::Ticket ticket, const TransactionCommit& commit);
  // Between transactions, while the held keys are at their limit: stop reading.
  void wait_for_replay_room();
  // --endpos: every read transaction is repeated before the run ends.
  void drain_replayed();
  void wait_for_replicas(Clock::time_point until);
  [[nodiscard]] Clock::time_point replay_deadline() const;
  [[nodiscard]] std::string replica_health() const;
  [[nodiscard]] std::string replica_status() const;

  Config config_;
  std::shared_ptr<const RuleSet> rules_;
  std::optional<Lsn> endpos_;
  std::string pg_password_;

  RunMetrics metrics_;
  AckTracker tracker_;
  std::vector<std::uint64_t> rule_targets_;  // per rule: bit i = target i
  PgReplicationConnection conn_;
  ChangeStream stream_;
  StateStore state_;
  StateWriter state_writer_;
  SystemdNotifier notifier_;
  std::unique_ptr<MetricsServer> metrics_server_;
  std::unique_ptr<SlotPoller> slot_poller_;
  std::unique_ptr<TableBinder> binder_;  // rules -> tables by OID; unbound rules made loud
  std::string system_id_;
  std::string database_;
  std::string status_text_ = "starting";
  std::unique_ptr<ReplayQueue> replay_;  // null without replicas
  // Every wait of this thread: the replication socket, the wake fd (signals, catalog
  // reads), every Redis connection, the slot poller's and the replica connections, one
  // poll() per round.
  EventLoop loop_;
  // One per Redis target, each a source of loop_: a target takes the actions of the rules
  // that name it (all by default) and every commit marker, at its own pace.
  std::vector<std::unique_ptr<SinkWorker>> sinks_;
  std::unique_ptr<ReplicaPoller> replica_poller_;  // a source of loop_, with replicas only
  Clock::time_point next_busy_round_{};
  ReadWindow read_window_;  // when the stream's socket is watched again between transactions
  std::vector<std::int64_t> replayed_scratch_;
  ReplayQueue::Released released_scratch_;
  Clock::time_point next_lag_update_{};
  Clock::time_point next_timeout_warning_{};
  Clock::time_point next_full_warning_{};

  std::vector<std::vector<QueueItem>> local_;  // per target, handed over in chunks
  std::vector<Action> actions_;
  std::vector<RenderFailure> failures_;
  std::vector<PublishedKey> published_;
  EventBuilder events_;  // the open transaction's invalidation events
  std::vector<TargetedAction> event_actions_;
  std::set<std::pair<std::uint32_t, std::string>> warned_failures_;
  bool skip_transaction_ = false;
  bool endpos_reached_ = false;
  bool ready_sent_ = false;
  bool state_valid_ = false;  // streamed from a checked server: the state file may be written
  int exit_code_ = 0;

  Lsn last_saved_lsn_ = kInvalidLsn;
  StatusSchedule schedule_{std::chrono::seconds(10), Clock::now()};
  Clock::time_point next_progress_{};
  Clock::time_point next_watchdog_{};
  struct Snapshot {
    double changes = 0, keys = 0, transactions = 0;
    Clock::time_point at{};
  } last_progress_;
};

}  // namespace walbust
