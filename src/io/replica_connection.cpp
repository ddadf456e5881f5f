#include "walbust/io/replica_connection.h"

#include <libpq-fe.h>
#include <poll.h>

#include <memory>
#include <vector>

#include "pg_connect_params.h"
#include "walbust/io/pg_replication.h"

namespace walbust {
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
  const ConnectParams params(conninfo, password, "walbust-replica");
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
  res.reset(PQexec(conn.get(), kReplicaPositionQuery));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK || PQntuples(res.get()) != 1) {
    facts.can_read_replay = false;
    facts.error = one_line(PQerrorMessage(conn.get()));
    return facts;
  }
  if (PQgetisnull(res.get(), 0, 1) == 0) facts.replay_lsn = parse_lsn(PQgetvalue(res.get(), 0, 1));
  return facts;
}

ReplicaReading replica_reading(const PgRows& rows) {
  if (rows.size() != 1 || rows[0].size() != 2 || !rows[0][0])
    throw PgError("", "reading the replay position failed: an unexpected answer");
  ReplicaReading out;
  out.in_recovery = *rows[0][0] == "t";
  if (rows[0][1]) out.replay_lsn = parse_lsn(*rows[0][1]);
  return out;
}

}  // namespace walbust
