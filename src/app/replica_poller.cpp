#include "replica_poller.h"

#include <poll.h>
#include <spdlog/spdlog.h>

#include <random>

#include "walbust/core/backoff.h"
#include "walbust/core/duration.h"
#include "walbust/io/pg_replication.h"
#include "walbust/io/replica_connection.h"

namespace walbust {

struct ReplicaPoller::Replica {
  Replica(const std::string& dsn, const std::string& password, ReplicaMetrics& m)
      : conn(dsn, password, "walbust-replica"), metrics(m) {}
  AsyncPgConnection conn;
  ReplicaMetrics& metrics;
  Backoff backoff{std::chrono::milliseconds(100), std::chrono::seconds(10)};
  Clock::time_point next_attempt{};  // while closed
  Clock::time_point since{};         // connecting or querying since
  Clock::time_point last_query{};
  Lsn known = kInvalidLsn;  // last replay position reported
  bool failing = false;     // in an outage (logged once)
  bool ever_up = false;
  bool warned_not_standby = false;
};

namespace {

// A connect or query without an answer this long counts as a failure: TCP alone may take
// minutes to notice a dead peer, and a stuck replica must not hide behind a live socket.
std::chrono::milliseconds answer_timeout(const ReplicaSettings& s) {
  return std::max<std::chrono::milliseconds>(std::chrono::seconds(5), 4 * s.poll_interval);
}

}  // namespace

ReplicaPoller::ReplicaPoller(const ReplicaSettings& settings, std::string password,
                             RunMetrics& metrics)
    : settings_(settings), password_(std::move(password)), metrics_(metrics) {
  for (std::size_t i = 0; i < settings_.dsns.size(); ++i) {
    replicas_.push_back(
        std::make_unique<Replica>(settings_.dsns[i], password_, *metrics_.replicas[i]));
  }
  reports_.resize(replicas_.size());
}

ReplicaPoller::~ReplicaPoller() { close(); }

void ReplicaPoller::close() {
  for (auto& r : replicas_) r->conn.close();
}

void ReplicaPoller::want(Lsn lsn) {
  // Lower too (kInvalidLsn once nothing waits): a lagging replica is not polled after
  // max_wait released what waited for it.
  if (lsn > wanted_) next_ = Clock::time_point::min();
  wanted_ = lsn;
}

std::optional<ReplicaPoller::Report> ReplicaPoller::take(std::size_t i) {
  auto out = reports_[i];
  reports_[i].reset();
  return out;
}

void ReplicaPoller::on_failure(Replica& r, const std::string& what) {
  r.conn.close();
  r.metrics.status.store(ReplicaMetrics::Status::Unreachable);
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  r.next_attempt =
      Clock::now() + r.backoff.next(std::uniform_real_distribution<double>(0.0, 1.0)(rng));
  if (r.failing) return;
  r.failing = true;
  spdlog::warn("replica {}: {}; reconnecting with backoff, transactions wait for it at most {}",
               r.metrics.name, what, format_duration(settings_.max_wait));
}

void ReplicaPoller::on_reading(Replica& r, std::size_t index, bool in_recovery,
                               std::optional<Lsn> lsn) {
  if (r.failing) {
    spdlog::info("replica {}: reachable again after {} attempts", r.metrics.name,
                 r.backoff.attempts());
    if (r.ever_up) r.metrics.reconnects.inc();
    r.failing = false;
  }
  r.ever_up = true;
  r.backoff.reset();
  if (!in_recovery) {
    // Promoted (or never a standby): its position no longer follows the primary's.
    r.metrics.status.store(ReplicaMetrics::Status::NotStandby);
    if (!r.warned_not_standby) {
      spdlog::error(
          "replica {}: not in recovery (promoted?); it cannot confirm replay, transactions wait "
          "for it "
          "at most {}. Remove it from replicas.dsns",
          r.metrics.name, format_duration(settings_.max_wait));
      r.warned_not_standby = true;
    }
    return;
  }
  r.warned_not_standby = false;
  r.metrics.status.store(ReplicaMetrics::Status::Up);
  if (!lsn) return;
  r.known = std::max(r.known, *lsn);
  r.metrics.replay_lsn.store(*lsn);
  reports_[index] = Report{*lsn, Clock::now(), pg_epoch_now_us()};
}

ReplicaPoller::Clock::time_point ReplicaPoller::service(Replica& r, Clock::time_point now) {
  using State = AsyncPgConnection::State;
  const auto state = r.conn.state();
  if ((state == State::Resolving || state == State::Connecting || state == State::Querying) &&
      now - r.since >= answer_timeout(settings_)) {
    on_failure(r, state == State::Resolving    ? "resolving the host name timed out"
                  : state == State::Connecting ? "connecting timed out"
                                               : "no answer to the position query");
    return r.next_attempt;
  }
  try {
    if (state == State::Closed) {
      if (now < r.next_attempt) return r.next_attempt;
      r.conn.start_connect();
      r.since = now;
      r.last_query = Clock::time_point{};  // the first query goes out once connected
    }
    if (r.conn.state() == State::Ready && wanted_ > r.known) {
      const auto due = r.last_query + settings_.poll_interval;
      if (now < due) return due;
      r.conn.send_query(kReplicaPositionQuery);
      r.last_query = now;
      r.since = now;
    } else if (r.conn.state() == State::Ready && r.last_query == Clock::time_point{}) {
      // Once after connecting: learn whether it is a standby and where it is.
      r.conn.send_query(kReplicaPositionQuery);
      r.last_query = now;
      r.since = now;
    }
  } catch (const PgError& e) {
    on_failure(r, e.what());
    return r.next_attempt;
  }
  const auto timeout = r.since + answer_timeout(settings_);
  switch (r.conn.state()) {
    case State::Ready:
      return Clock::time_point::max();
    case State::Resolving:  // no fd to wait on: look again shortly
      return std::min(timeout, now + AsyncPgConnection::kLookupRecheck);
    default:
      return timeout;
  }
}

ReplicaPoller::Clock::time_point ReplicaPoller::prepare(std::vector<pollfd>& fds) {
  polled_.clear();
  for (std::size_t i = 0; i < replicas_.size(); ++i) {
    const auto& conn = replicas_[i]->conn;
    if (conn.events() == 0 || conn.socket() < 0) continue;
    fds.push_back(pollfd{conn.socket(), conn.events(), 0});
    polled_.push_back(i);
  }
  return next_;
}

void ReplicaPoller::dispatch(Clock::time_point now, std::span<const pollfd> ready) {
  // Answers first: a round that came late must not time out an answer that is waiting.
  for (std::size_t f = 0; f < ready.size() && f < polled_.size(); ++f) {
    if (ready[f].revents != 0) step(*replicas_[polled_[f]], polled_[f]);
  }
  for (std::size_t i = 0; i < replicas_.size(); ++i) {
    if (replicas_[i]->conn.state() == AsyncPgConnection::State::Resolving) step(*replicas_[i], i);
  }
  next_ = Clock::time_point::max();
  for (auto& r : replicas_) next_ = std::min(next_, service(*r, now));
}

void ReplicaPoller::step(Replica& r, std::size_t index) {
  try {
    if (auto rows = r.conn.step()) {
      const ReplicaReading reading = replica_reading(*rows);
      on_reading(r, index, reading.in_recovery, reading.replay_lsn);
    }
    if (r.conn.state() == AsyncPgConnection::State::Ready &&
        r.metrics.status.load() == ReplicaMetrics::Status::Connecting) {
      r.metrics.status.store(ReplicaMetrics::Status::Up);
    }
  } catch (const PgError& e) {
    on_failure(r, e.what());
  }
}

}  // namespace walbust
