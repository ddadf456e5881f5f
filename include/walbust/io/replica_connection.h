#pragma once
// What walbust asks a read replica: its name for logs and metrics, the facts checked at
// start and by `check --db` (a blocking inspection), and the replay position query that
// the ReplicaPoller sends on an AsyncPgConnection.
#include <chrono>
#include <optional>
#include <string>

#include "walbust/core/db_check.h"
#include "walbust/core/lsn.h"
#include "walbust/io/async_pg_connection.h"

namespace walbust {

// What a replica says about itself.
struct ReplicaReading {
  bool in_recovery = false;
  std::optional<Lsn> replay_lsn;  // pg_last_wal_replay_lsn(); none before any replay
};

// "host:port" of a conninfo (defaults as libpq's), for logs and metric labels.
[[nodiscard]] std::string replica_name(const std::string& conninfo);

// Connects (bounded by connect_timeout), reads the facts, disconnects. Never throws.
[[nodiscard]] ReplicaFacts inspect_replica(const std::string& conninfo,
                                           const std::string& password);

// The query that reads a replica's position, and its answer.
inline constexpr const char* kReplicaPositionQuery =
    "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.pg_last_wal_replay_lsn()::text";
// Throws PgError when the rows are not one row of two columns.
[[nodiscard]] ReplicaReading replica_reading(const PgRows& rows);

}  // namespace walbust
