#include "walbust/io/replica_connection.h"

#include <libpq-fe.h>
#include <poll.h>

#include <memory>
#include <vector>

#include "walbust/io/pg_replication.h"

namespace walbust {
namespace {

constexpr const char* kPositionQuery =
    "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.pg_last_wal_replay_lsn()::text";

std::string one_line(const char* msg) {
  std::string out;
  for (const char* p = msg != nullptr ? msg : ""; *p != '\0'; ++p) {
    if (*p == '\n') {
      if (p[1] != '\0') out += "; ";
      continue;
    }
    out += *p;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// Same defaults as the primary's connections: bounded connects and TCP keepalives, so a
// silently dead replica is noticed; the user's conninfo (expanded from dbname) wins.
struct ConnectParams {
  std::vector<const char*> keys = {
      "connect_timeout",  "keepalives_idle", "keepalives_interval",      "keepalives_count",
      "tcp_user_timeout", "dbname",          "fallback_application_name"};
  std::vector<const char*> values;
  // `resolved`: HostResolver's keywords, after the conninfo so they win. The strings must
  // outlive the connect call.
  ConnectParams(const std::string& conninfo, const std::string& password,
                const std::vector<std::pair<std::string, std::string>>& resolved = {})
      : values{"5", "10", "5", "3", "10000", conninfo.c_str(), "walbust-replica"} {
    if (!password.empty()) {
      keys.push_back("password");
      values.push_back(password.c_str());
    }
    for (const auto& [key, value] : resolved) {
      keys.push_back(key.c_str());
      values.push_back(value.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
  }
};

void silence_notices(void*, const char*) {}

}  // namespace

std::string replica_name(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (opts == nullptr) {
    PQfreemem(err);
    return "replica";
  }
  std::string host;
  std::string port;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    const std::string key = o->keyword;
    if (o->val == nullptr || *o->val == '\0') continue;
    if (key == "host" || (key == "hostaddr" && host.empty())) host = o->val;
    if (key == "port") port = o->val;
  }
  PQconninfoFree(opts);
  if (host.empty()) host = "localhost";
  return host + ":" + (port.empty() ? "5432" : port);
}

ReplicaFacts inspect_replica(const std::string& conninfo, const std::string& password) {
  ReplicaFacts facts;
  facts.name = replica_name(conninfo);
  const ConnectParams params(conninfo, password);
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(
      PQconnectdbParams(params.keys.data(), params.values.data(), 1), &PQfinish);
  if (conn == nullptr || PQstatus(conn.get()) != CONNECTION_OK) {
    facts.error = conn ? one_line(PQerrorMessage(conn.get())) : "cannot allocate a connection";
    return facts;
  }
  PQsetNoticeProcessor(conn.get(), silence_notices, nullptr);
  facts.reachable = true;
  std::unique_ptr<PGresult, decltype(&PQclear)> res(
      PQexec(conn.get(),
             "SELECT pg_catalog.pg_is_in_recovery(), "
             "pg_catalog.has_function_privilege('pg_catalog.pg_last_wal_replay_lsn()', 'EXECUTE')"),
      &PQclear);
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK || PQntuples(res.get()) != 1) {
    facts.error = one_line(PQerrorMessage(conn.get()));
    return facts;
  }
  facts.in_recovery = std::string(PQgetvalue(res.get(), 0, 0)) == "t";
  facts.can_read_replay = std::string(PQgetvalue(res.get(), 0, 1)) == "t";
  if (!facts.can_read_replay) return facts;
  res.reset(PQexec(conn.get(), kPositionQuery));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK || PQntuples(res.get()) != 1) {
    facts.can_read_replay = false;
    facts.error = one_line(PQerrorMessage(conn.get()));
    return facts;
  }
  if (PQgetisnull(res.get(), 0, 1) == 0) facts.replay_lsn = parse_lsn(PQgetvalue(res.get(), 0, 1));
  return facts;
}

ReplicaConnection::ReplicaConnection(std::string conninfo, std::string password)
    : conninfo_(std::move(conninfo)), password_(std::move(password)) {}

ReplicaConnection::~ReplicaConnection() { close(); }

int ReplicaConnection::socket() const { return conn_ != nullptr ? PQsocket(conn_) : -1; }

void ReplicaConnection::close() {
  resolver_.reset();
  if (conn_ != nullptr) PQfinish(conn_);
  conn_ = nullptr;
  state_ = State::Closed;
  events_ = 0;
}

void ReplicaConnection::fail(const std::string& what) {
  const std::string msg = conn_ != nullptr ? one_line(PQerrorMessage(conn_)) : std::string();
  close();
  throw PgError("", what + (msg.empty() ? "" : ": " + msg));
}

void ReplicaConnection::start_connect() {
  close();
  resolver_ = std::make_unique<HostResolver>(conninfo_);
  state_ = State::Resolving;
  events_ = 0;
  if (resolver_->done()) connect_resolved();
}

void ReplicaConnection::connect_resolved() {
  if (!resolver_->error().empty()) fail("cannot connect: " + resolver_->error());
  const ConnectParams params(conninfo_, password_, resolver_->params());
  conn_ = PQconnectStartParams(params.keys.data(), params.values.data(), 1);
  resolver_.reset();
  if (conn_ == nullptr || PQstatus(conn_) == CONNECTION_BAD) fail("cannot connect");
  PQsetNoticeProcessor(conn_, silence_notices, nullptr);
  state_ = State::Connecting;
  events_ = POLLOUT;  // as libpq documents: behave as if PGRES_POLLING_WRITING was returned
}

void ReplicaConnection::send_query() {
  if (state_ != State::Ready) return;
  if (PQsendQuery(conn_, kPositionQuery) != 1) fail("cannot send the position query");
  state_ = State::Querying;
  events_ = POLLIN;
  if (PQflush(conn_) == 1) events_ = POLLIN | POLLOUT;
}

std::optional<ReplicaReading> ReplicaConnection::step() {
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
    if (flushed < 0) fail("cannot send the position query");
    events_ = flushed == 1 ? (POLLIN | POLLOUT) : POLLIN;
  }
  if (PQconsumeInput(conn_) != 1) fail("connection lost");
  if (PQisBusy(conn_) != 0) return std::nullopt;
  return read_result();
}

std::optional<ReplicaReading> ReplicaConnection::read_result() {
  std::optional<ReplicaReading> reading;
  std::string error;
  while (PGresult* r = PQgetResult(conn_)) {
    std::unique_ptr<PGresult, decltype(&PQclear)> guard(r, &PQclear);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 2) {
      ReplicaReading out;
      out.in_recovery = std::string(PQgetvalue(r, 0, 0)) == "t";
      if (PQgetisnull(r, 0, 1) == 0) out.replay_lsn = parse_lsn(PQgetvalue(r, 0, 1));
      reading = out;
    } else if (error.empty()) {
      error = one_line(PQresultErrorMessage(r));
    }
  }
  if (!reading) {
    close();
    throw PgError("",
                  "reading the replay position failed: " + (error.empty() ? "no result" : error));
  }
  state_ = State::Ready;
  events_ = 0;
  return reading;
}

}  // namespace walbust
