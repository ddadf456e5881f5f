#include "walbust/io/async_pg_connection.h"

#include <libpq-fe.h>
#include <poll.h>

#include <memory>

#include "pg_connect_params.h"
#include "walbust/io/pg_replication.h"

namespace walbust {

AsyncPgConnection::AsyncPgConnection(std::string conninfo, std::string password,
                                     std::string application_name)
    : conninfo_(std::move(conninfo)),
      password_(std::move(password)),
      application_name_(std::move(application_name)) {}

AsyncPgConnection::~AsyncPgConnection() { close(); }

int AsyncPgConnection::socket() const { return conn_ != nullptr ? PQsocket(conn_) : -1; }

void AsyncPgConnection::close() {
  resolver_.reset();
  if (conn_ != nullptr) PQfinish(conn_);
  conn_ = nullptr;
  state_ = State::Closed;
  events_ = 0;
}

void AsyncPgConnection::fail(const std::string& what) {
  const std::string msg = conn_ != nullptr ? one_line(PQerrorMessage(conn_)) : std::string();
  close();
  throw PgError("", what + (msg.empty() ? "" : ": " + msg));
}

void AsyncPgConnection::start_connect() {
  close();
  resolver_ = std::make_unique<HostResolver>(conninfo_);
  state_ = State::Resolving;
  events_ = 0;
  if (resolver_->done()) connect_resolved();
}

void AsyncPgConnection::connect_resolved() {
  if (!resolver_->error().empty()) fail("cannot connect: " + resolver_->error());
  const ConnectParams params(conninfo_, password_, application_name_.c_str(), resolver_->params());
  conn_ = PQconnectStartParams(params.keys.data(), params.values.data(), 1);
  resolver_.reset();
  if (conn_ == nullptr || PQstatus(conn_) == CONNECTION_BAD) fail("cannot connect");
  PQsetNoticeProcessor(conn_, silence_notices, nullptr);
  state_ = State::Connecting;
  events_ = POLLOUT;  // as libpq documents: behave as if PGRES_POLLING_WRITING was returned
}

void AsyncPgConnection::send_query(const std::string& sql) {
  if (state_ != State::Ready) return;
  if (PQsendQuery(conn_, sql.c_str()) != 1) fail("cannot send the query");
  state_ = State::Querying;
  events_ = POLLIN;
  if (PQflush(conn_) == 1) events_ = POLLIN | POLLOUT;
}

std::optional<PgRows> AsyncPgConnection::step() {
  if (state_ == State::Resolving) {
    if (resolver_->done()) connect_resolved();
    return std::nullopt;
  }
  if (state_ == State::Connecting) {
    switch (PQconnectPoll(conn_)) {
      case PGRES_POLLING_READING:
        events_ = POLLIN;
        return std::nullopt;
      case PGRES_POLLING_WRITING:
        events_ = POLLOUT;
        return std::nullopt;
      case PGRES_POLLING_OK:
        if (PQsetnonblocking(conn_, 1) != 0) fail("cannot switch to non-blocking mode");
        state_ = State::Ready;
        events_ = 0;
        return std::nullopt;
      default:
        fail("cannot connect");
    }
  }
  if (state_ != State::Querying) return std::nullopt;
  if ((events_ & POLLOUT) != 0) {
    const int flushed = PQflush(conn_);
    if (flushed < 0) fail("cannot send the query");
    events_ = flushed == 1 ? (POLLIN | POLLOUT) : POLLIN;
  }
  if (PQconsumeInput(conn_) != 1) fail("connection lost");
  if (PQisBusy(conn_) != 0) return std::nullopt;
  return read_result();
}

std::optional<PgRows> AsyncPgConnection::read_result() {
  std::optional<PgRows> rows;
  std::string error;
  while (PGresult* r = PQgetResult(conn_)) {
    std::unique_ptr<PGresult, decltype(&PQclear)> guard(r, &PQclear);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && !rows) {
      rows.emplace();
      for (int i = 0; i < PQntuples(r); ++i) {
        auto& row = rows->emplace_back();
        for (int f = 0; f < PQnfields(r); ++f) {
          if (PQgetisnull(r, i, f) != 0) {
            row.emplace_back();
          } else {
            row.emplace_back(std::string(PQgetvalue(r, i, f), PQgetlength(r, i, f)));
          }
        }
      }
    } else if (PQresultStatus(r) != PGRES_TUPLES_OK && error.empty()) {
      error = one_line(PQresultErrorMessage(r));
    }
  }
  if (!rows || !error.empty()) {
    close();
    throw PgError("", "the query failed: " + (error.empty() ? "no result" : error));
  }
  state_ = State::Ready;
  events_ = 0;
  return rows;
}

}  // namespace walbust
