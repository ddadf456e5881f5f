#include "replica_poller.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <random>

#include "signals.h"
#include "walbust/core/backoff.h"
#include "walbust/core/duration.h"
#include "walbust/io/pg_replication.h"
#include "walbust/io/replica_connection.h"

namespace walbust {

struct ReplicaPoller::Replica {
  Replica(const std::string& dsn, const std::string& password, ReplicaMetrics& m)
      : conn(dsn, password), metrics(m) {}
  ReplicaConnection conn;
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
                             RunMetrics& metrics, std::function<void()> wake)
    : settings_(settings),
      password_(std::move(password)),
      metrics_(metrics),
      wake_(std::move(wake)) {
  for (std::size_t i = 0; i < settings_.dsns.size(); ++i) {
    replicas_.push_back(
        std::make_unique<Replica>(settings_.dsns[i], password_, *metrics_.replicas[i]));
  }
  reports_.resize(replicas_.size());
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

ReplicaPoller::~ReplicaPoller() {
  stop();
  if (event_fd_ >= 0) ::close(event_fd_);
}

void ReplicaPoller::start() {
  thread_ = std::thread([this] { run(); });
}

void ReplicaPoller::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  const std::uint64_t one = 1;
  (void)!::write(event_fd_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void ReplicaPoller::want(Lsn lsn) {
  {
    std::lock_guard lock(mu_);
    // Lower too (kInvalidLsn once nothing waits): a lagging replica is not polled after
    // max_wait released what waited for it.
    const bool more = lsn > wanted_;
    wanted_ = lsn;
    if (!more) return;
  }
  const std::uint64_t one = 1;
  (void)!::write(event_fd_, &one, sizeof one);
}

std::optional<ReplicaPoller::Report> ReplicaPoller::take(std::size_t i) {
  std::lock_guard lock(mu_);
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
  {
    std::lock_guard lock(mu_);
    reports_[index] = Report{*lsn, Clock::now(), pg_epoch_now_us()};
  }
  wake_();
}

ReplicaPoller::Clock::time_point ReplicaPoller::service(Replica& r, Clock::time_point now,
                                                        Lsn wanted) {
  using State = ReplicaConnection::State;
  const auto state = r.conn.state();
  if ((state == State::Connecting || state == State::Querying) &&
      now - r.since >= answer_timeout(settings_)) {
    on_failure(
        r, state == State::Connecting ? "connecting timed out" : "no answer to the position query");
    return r.next_attempt;
  }
  try {
    if (state == State::Closed) {
      if (now < r.next_attempt) return r.next_attempt;
      r.conn.start_connect();
      r.since = now;
      r.last_query = Clock::time_point{};  // the first query goes out once connected
    }
    if (r.conn.state() == State::Ready && wanted > r.known) {
      const auto due = r.last_query + settings_.poll_interval;
      if (now < due) return due;
      r.conn.send_query();
      r.last_query = now;
      r.since = now;
    } else if (r.conn.state() == State::Ready && r.last_query == Clock::time_point{}) {
      // Once after connecting: learn whether it is a standby and where it is.
      r.conn.send_query();
      r.last_query = now;
      r.since = now;
    }
  } catch (const PgError& e) {
    on_failure(r, e.what());
    return r.next_attempt;
  }
  return r.conn.state() == State::Ready ? Clock::time_point::max()
                                        : r.since + answer_timeout(settings_);
}

void ReplicaPoller::run() {
  Signals::begin_worker_thread("replica poller");
  std::vector<pollfd> fds;
  std::vector<std::size_t> owner;
  while (true) {
    Lsn wanted = kInvalidLsn;
    {
      std::lock_guard lock(mu_);
      if (stop_) break;
      wanted = wanted_;
    }
    const auto now = Clock::now();
    auto wake_at = now + std::chrono::seconds(1);
    fds.clear();
    owner.clear();
    fds.push_back(pollfd{event_fd_, POLLIN, 0});
    for (std::size_t i = 0; i < replicas_.size(); ++i) {
      wake_at = std::min(wake_at, service(*replicas_[i], now, wanted));
      const auto& conn = replicas_[i]->conn;
      if (conn.events() != 0 && conn.socket() >= 0) {
        fds.push_back(pollfd{conn.socket(), conn.events(), 0});
        owner.push_back(i);
      }
    }
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(
        std::max(wake_at - now, Clock::duration::zero()));
    (void)::poll(fds.data(), fds.size(), static_cast<int>(wait.count()));
    if (fds[0].revents != 0) {
      std::uint64_t v = 0;
      (void)!::read(event_fd_, &v, sizeof v);
    }
    for (std::size_t f = 1; f < fds.size(); ++f) {
      if (fds[f].revents == 0) continue;
      Replica& r = *replicas_[owner[f - 1]];
      try {
        if (auto reading = r.conn.step())
          on_reading(r, owner[f - 1], reading->in_recovery, reading->replay_lsn);
        if (r.conn.state() == ReplicaConnection::State::Ready &&
            r.metrics.status.load() == ReplicaMetrics::Status::Connecting) {
          r.metrics.status.store(ReplicaMetrics::Status::Up);
        }
      } catch (const PgError& e) {
        on_failure(r, e.what());
      }
    }
  }
  for (auto& r : replicas_) r->conn.close();
}

}  // namespace walbust
