#pragma once
// Reads each read replica's replay position on its own non-blocking connection, served by
// the stream thread's EventLoop: a slow or dead replica delays neither the replication
// stream nor the first deletes, because it only ever adds an fd and a deadline to the
// loop's wait and never blocks. Replicas are asked only while some transaction waits for a
// position they have not reported yet, at most once per poll_interval each: an idle system
// does not poll. Lost connections are retried with capped exponential backoff and jitter.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "run_metrics.h"
#include "walbust/core/lsn.h"
#include "walbust/io/config.h"
#include "walbust/io/event_loop.h"

namespace walbust {

class ReplicaPoller final : public EventLoop::Source {
 public:
  using Clock = std::chrono::steady_clock;
  struct Report {
    Lsn lsn = kInvalidLsn;
    Clock::time_point at{};
    std::int64_t at_us = 0;  // the same instant in PostgreSQL epoch microseconds
  };

  // `metrics` has one entry per dsn (RunMetrics::add_replicas). Connects once the loop
  // first dispatches it.
  ReplicaPoller(const ReplicaSettings& settings, std::string password, RunMetrics& metrics);
  ~ReplicaPoller() override;
  ReplicaPoller(const ReplicaPoller&) = delete;
  ReplicaPoller& operator=(const ReplicaPoller&) = delete;

  // Replicas that have not reported `lsn` yet are asked until they do; kInvalidLsn: stop.
  // A higher position is asked for in the loop's next round, without waiting.
  void want(Lsn lsn);
  // The newest report of replica `i` not taken yet.
  [[nodiscard]] std::optional<Report> take(std::size_t i);
  void close();

  Clock::time_point prepare(std::vector<pollfd>& fds) override;
  void dispatch(Clock::time_point now, std::span<const pollfd> ready) override;

 private:
  struct Replica;
  // Timeouts, (re)connects and queries due; returns when to look again.
  Clock::time_point service(Replica& r, Clock::time_point now);
  // Reads what the replica's socket brought.
  void step(Replica& r, std::size_t index);
  void on_reading(Replica& r, std::size_t index, bool in_recovery, std::optional<Lsn> lsn);
  void on_failure(Replica& r, const std::string& what);

  ReplicaSettings settings_;
  std::string password_;
  RunMetrics& metrics_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::vector<std::size_t> polled_;  // the replica of each fd prepare() added
  Clock::time_point next_ = Clock::time_point::min();
  Lsn wanted_ = kInvalidLsn;
  std::vector<std::optional<Report>> reports_;
};

}  // namespace walbust
