#pragma once
// An ordinary libpq connection that never blocks its caller, from the host name lookup
// (HostResolver) to the last row, so the stream thread's EventLoop can serve several of
// them and a dead or slow server never holds it up: the caller polls socket() for
// events() and calls step() when it is ready, and calls step() while Resolving (there is
// no socket yet) until the lookup ended. One query at a time; connects are bounded by
// connect_timeout and dead peers found by TCP keepalives, like walbust's other
// connections.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "walbust/io/host_resolver.h"

struct pg_conn;

namespace walbust {

using PgRows = std::vector<std::vector<std::optional<std::string>>>;

class AsyncPgConnection {
 public:
  enum class State { Closed, Resolving, Connecting, Ready, Querying };
  // A lookup in flight has no fd to wake a poll: call step() again this soon.
  static constexpr std::chrono::milliseconds kLookupRecheck{5};

  AsyncPgConnection(std::string conninfo, std::string password, std::string application_name);
  ~AsyncPgConnection();
  AsyncPgConnection(const AsyncPgConnection&) = delete;
  AsyncPgConnection& operator=(const AsyncPgConnection&) = delete;

  // Starts resolving the host names, then connecting. Throws PgError when it fails at once.
  void start_connect();
  // Sends `sql` (one statement); only in State::Ready. Throws PgError.
  void send_query(const std::string& sql);
  // Advances after socket activity, or while Resolving. Returns the rows once a query
  // completed. Throws PgError on failure (also an error reply); the connection is then
  // closed.
  [[nodiscard]] std::optional<PgRows> step();
  void close();

  [[nodiscard]] State state() const { return state_; }
  [[nodiscard]] int socket() const;
  // poll() events the connection waits for (POLLIN / POLLOUT), 0 when none.
  [[nodiscard]] short events() const { return events_; }

 private:
  [[noreturn]] void fail(const std::string& what);
  std::optional<PgRows> read_result();

  void connect_resolved();

  std::string conninfo_;
  std::string password_;
  std::string application_name_;
  std::unique_ptr<HostResolver> resolver_;  // while Resolving
  pg_conn* conn_ = nullptr;
  State state_ = State::Closed;
  short events_ = 0;
};

}  // namespace walbust
