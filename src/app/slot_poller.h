#pragma once
// Reads the slot's state from the server on an ordinary connection, so the lag metric is
// the server's own view (pg_current_wal_lsn() - confirmed_flush_lsn), not a guess, and
// so an approaching slot loss (safe_wal_size) is visible before it happens. A source of
// the stream thread's EventLoop: the connection never blocks (AsyncPgConnection), a query
// goes out every `interval`, and a connect or query unanswered for kAnswerTimeout is given
// up and retried at the next interval. Only metrics depend on it, and an outage of the
// server is logged by the replication connection, so its own failures log at debug level,
// once per outage.
#include <chrono>
#include <span>
#include <string>
#include <vector>

#include "run_metrics.h"
#include "walbust/io/async_pg_connection.h"
#include "walbust/io/event_loop.h"

namespace walbust {

class SlotPoller final : public EventLoop::Source {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr auto kAnswerTimeout = std::chrono::seconds(30);

  SlotPoller(std::string conninfo, std::string password, const std::string& slot,
             std::chrono::milliseconds interval, RunMetrics& metrics);

  Clock::time_point prepare(std::vector<pollfd>& fds) override;
  void dispatch(Clock::time_point now, std::span<const pollfd> ready) override;
  void close() { conn_.close(); }

 private:
  // Timeouts, the connect and the query due; returns when to look again.
  Clock::time_point service(Clock::time_point now);
  void on_rows(const PgRows& rows);
  void on_failure(const std::string& what, Clock::time_point now);

  AsyncPgConnection conn_;
  std::string query_;
  std::string slot_;
  std::chrono::milliseconds interval_;
  RunMetrics& metrics_;
  Clock::time_point next_ = Clock::time_point::min();
  Clock::time_point since_{};       // connecting or querying since
  Clock::time_point next_query_{};  // once connected (or the next connect while closed)
  bool polled_ = false;             // prepare() added the connection's fd
  bool failing_ = false;
};

}  // namespace walbust
