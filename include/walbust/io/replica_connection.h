#pragma once
// An ordinary, non-blocking libpq connection to a read replica that reads its replay
// position. Non-blocking from the host name lookup on (HostResolver), so the stream
// thread's loop can serve many replicas and a dead or slow one never holds it up: the
// caller polls socket() for events() and calls step(), and calls step() while Resolving
// (there is no socket yet) until the lookup ended.
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "walbust/core/db_check.h"
#include "walbust/core/lsn.h"
#include "walbust/io/host_resolver.h"

struct pg_conn;

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

class ReplicaConnection {
 public:
  enum class State { Closed, Resolving, Connecting, Ready, Querying };

  ReplicaConnection(std::string conninfo, std::string password);
  ~ReplicaConnection();
  ReplicaConnection(const ReplicaConnection&) = delete;
  ReplicaConnection& operator=(const ReplicaConnection&) = delete;

  // Starts resolving the host names, then connecting. Throws PgError when it fails at once.
  void start_connect();
  // Sends the position query; only in State::Ready. Throws PgError.
  void send_query();
  // Advances after socket activity (or a timeout). Returns the reading once a query
  // completed. Throws PgError on failure; the connection is then closed.
  [[nodiscard]] std::optional<ReplicaReading> step();
  void close();

  [[nodiscard]] State state() const { return state_; }
  [[nodiscard]] int socket() const;
  // poll() events the connection waits for (POLLIN / POLLOUT), 0 when none.
  [[nodiscard]] short events() const { return events_; }

 private:
  [[noreturn]] void fail(const std::string& what);
  std::optional<ReplicaReading> read_result();

  void connect_resolved();

  std::string conninfo_;
  std::string password_;
  std::unique_ptr<HostResolver> resolver_;  // while Resolving
  pg_conn* conn_ = nullptr;
  State state_ = State::Closed;
  short events_ = 0;
};

}  // namespace walbust
