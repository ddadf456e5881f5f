#include "slot_poller.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <optional>

#include "walbust/core/sql_quote.h"
#include "walbust/io/pg_replication.h"

namespace walbust {

SlotPoller::SlotPoller(std::string conninfo, std::string password, const std::string& slot,
                       std::chrono::milliseconds interval, RunMetrics& metrics)
    : conn_(std::move(conninfo), std::move(password), "walbust-slot-poller"),
      query_(
          "SELECT (pg_catalog.pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, "
          "coalesce(safe_wal_size, -1) FROM pg_catalog.pg_replication_slots WHERE slot_name = " +
          sql_literal(slot)),
      slot_(slot),
      interval_(interval),
      metrics_(metrics) {}

SlotPoller::Clock::time_point SlotPoller::prepare(std::vector<pollfd>& fds) {
  polled_ = conn_.events() != 0 && conn_.socket() >= 0;
  if (polled_) fds.push_back(pollfd{conn_.socket(), conn_.events(), 0});
  return next_;
}

void SlotPoller::dispatch(Clock::time_point now, std::span<const pollfd> ready) {
  // The answer first: a round that came late must not time out an answer that is waiting.
  const bool readable = polled_ && !ready.empty() && ready.front().revents != 0;
  if (readable || conn_.state() == AsyncPgConnection::State::Resolving) {
    try {
      if (auto rows = conn_.step()) on_rows(*rows);
    } catch (const PgError& e) {
      on_failure(e.what(), now);
    }
  }
  next_ = service(now);
}

namespace {

// A bigint column as the server sent it; nullopt for NULL or anything else, never a throw:
// this runs inside the stream thread's loop.
std::optional<double> bigint(const std::optional<std::string>& text) {
  if (!text) return std::nullopt;
  long long v = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc() || end != text->data() + text->size()) return std::nullopt;
  return static_cast<double>(v);
}

}  // namespace

void SlotPoller::on_rows(const PgRows& rows) {
  if (!rows.empty() && rows[0].size() == 2) {
    if (const auto lag = bigint(rows[0][0])) metrics_.lag_bytes.set(*lag);
    if (const auto safe = bigint(rows[0][1])) metrics_.slot_safe_wal_size.set(*safe);
  }
  failing_ = false;
}

void SlotPoller::on_failure(const std::string& what, Clock::time_point now) {
  conn_.close();
  next_query_ = now + interval_;
  if (!failing_) spdlog::debug("postgres: cannot read slot {} for metrics: {}", slot_, what);
  failing_ = true;
}

SlotPoller::Clock::time_point SlotPoller::service(Clock::time_point now) {
  using State = AsyncPgConnection::State;
  const State state = conn_.state();
  if (state != State::Closed && state != State::Ready && now - since_ >= kAnswerTimeout) {
    on_failure("no answer", now);
    return next_query_;
  }
  try {
    if (conn_.state() == State::Closed && now >= next_query_) {
      conn_.start_connect();
      since_ = now;
    }
    if (conn_.state() == State::Ready && now >= next_query_) {
      conn_.send_query(query_);
      since_ = now;
      next_query_ = now + interval_;
    }
  } catch (const PgError& e) {
    on_failure(e.what(), now);
  }
  switch (conn_.state()) {
    case State::Closed:
    case State::Ready:
      return next_query_;
    case State::Resolving:  // no fd to wait on: look again shortly
      return std::min(since_ + kAnswerTimeout, now + AsyncPgConnection::kLookupRecheck);
    default:
      return since_ + kAnswerTimeout;
  }
}

}  // namespace walbust
