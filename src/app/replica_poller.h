#pragma once
// Reads each read replica's replay position on its own connection, in its own thread, so
// a slow or dead replica never holds up the replication loop or the first deletes.
// Replicas are asked only while some transaction waits for a position they have not
// reported yet, at most once per poll_interval each: an idle system does not poll. Lost
// connections are retried with capped exponential backoff and jitter.
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "run_metrics.h"
#include "walbust/core/lsn.h"
#include "walbust/io/config.h"

namespace walbust {

class ReplicaPoller {
 public:
  using Clock = std::chrono::steady_clock;
  struct Report {
    Lsn lsn = kInvalidLsn;
    Clock::time_point at{};
    std::int64_t at_us = 0;  // the same instant in PostgreSQL epoch microseconds
  };

  // `metrics` has one entry per dsn (RunMetrics::add_replicas). `wake` is called from the
  // poller thread after a new report, so the source thread takes it at once.
  ReplicaPoller(const ReplicaSettings& settings, std::string password, RunMetrics& metrics,
                std::function<void()> wake);
  ~ReplicaPoller();
  void start();
  void stop();

  // Replicas that have not reported `lsn` yet are asked until they do; kInvalidLsn: stop.
  void want(Lsn lsn);
  // The newest report of replica `i` not taken yet.
  [[nodiscard]] std::optional<Report> take(std::size_t i);

 private:
  struct Replica;
  void run();
  // One pass: timeouts, (re)connects and queries due; returns when to look again.
  Clock::time_point service(Replica& r, Clock::time_point now, Lsn wanted);
  void on_reading(Replica& r, std::size_t index, bool in_recovery, std::optional<Lsn> lsn);
  void on_failure(Replica& r, const std::string& what);

  ReplicaSettings settings_;
  std::string password_;
  RunMetrics& metrics_;
  std::function<void()> wake_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  int event_fd_ = -1;
  std::thread thread_;
  std::mutex mu_;
  bool stop_ = false;
  Lsn wanted_ = kInvalidLsn;
  std::vector<std::optional<Report>> reports_;
};

}  // namespace walbust
