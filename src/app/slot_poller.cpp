#include "slot_poller.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include "signals.h"
#include "walbust/io/pg_replication.h"

namespace walbust {

SlotPoller::SlotPoller(std::string conninfo, std::string password, std::string slot,
                       std::chrono::milliseconds interval, RunMetrics& metrics)
    : conninfo_(std::move(conninfo)),
      password_(std::move(password)),
      slot_(std::move(slot)),
      interval_(interval),
      metrics_(metrics) {}

SlotPoller::~SlotPoller() { stop(); }

void SlotPoller::start() {
  thread_ = std::thread([this] { run(); });
}

void SlotPoller::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    // A query blocked on a silent network would never return: shutting the socket down
    // makes it fail at once, so stopping never hangs.
    if (socket_ >= 0) ::shutdown(socket_, SHUT_RDWR);
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void SlotPoller::run() {
  Signals::begin_worker_thread("slot poller");
  PgReplicationConnection conn(conninfo_, password_, /*replication=*/false);
  bool failing = false;
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    try {
      if (!conn.connected()) {
        conn.connect();
        std::lock_guard guard(mu_);
        socket_ = conn.socket();
      }
      const auto rows = conn.query(
          "SELECT (pg_catalog.pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, "
          "coalesce(safe_wal_size, -1) "
          "FROM pg_catalog.pg_replication_slots WHERE slot_name = " +
          conn.quote_literal(slot_));
      if (!rows.empty()) {
        if (rows[0][0]) metrics_.lag_bytes.set(std::stod(*rows[0][0]));
        if (rows[0][1]) metrics_.slot_safe_wal_size.set(std::stod(*rows[0][1]));
      }
      failing = false;
    } catch (const std::exception& e) {
      // Only metrics depend on this connection, and an outage of the server is already
      // logged by the replication connection: debug level, once per outage.
      if (!failing) spdlog::debug("postgres: cannot read slot {} for metrics: {}", slot_, e.what());
      failing = true;
      {
        std::lock_guard guard(mu_);
        socket_ = -1;
      }
      conn.close();
    }
    lock.lock();
    cv_.wait_for(lock, interval_, [this] { return stop_; });
  }
}

}  // namespace walbust
