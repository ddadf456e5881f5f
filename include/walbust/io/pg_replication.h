#pragma once
// A libpq logical replication connection (replication=database): slot management,
// START_REPLICATION with pgoutput, reading CopyData frames and sending standby status
// updates. Owns no policy: what to acknowledge is decided by AckTracker.
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "walbust/core/lsn.h"

struct pg_conn;

namespace walbust {

// A PostgreSQL error with its SQLSTATE ("" for connection-level failures).
class PgError : public std::runtime_error {
 public:
  PgError(std::string sqlstate, const std::string& message)
      : std::runtime_error(message), sqlstate_(std::move(sqlstate)) {}
  [[nodiscard]] const std::string& sqlstate() const { return sqlstate_; }

 private:
  std::string sqlstate_;
};

struct SystemIdentity {
  std::string system_id;
  int timeline = 0;
  Lsn xlogpos = kInvalidLsn;
  std::string dbname;
};

struct SlotInfo {
  std::string plugin;
  std::string slot_type;
  std::string database;
  bool active = false;
  int active_pid = 0;
  Lsn confirmed_flush_lsn = kInvalidLsn;
  Lsn restart_lsn = kInvalidLsn;
  std::string wal_status;  // reserved | extended | unreserved | lost | "" (unknown)
};

// One frame of the replication stream.
struct ReplicationFrame {
  enum class Kind { XLogData, Keepalive, None, End };
  Kind kind = Kind::None;
  Lsn data_start = kInvalidLsn;  // XLogData: the WAL position of the record
  Lsn wal_end = kInvalidLsn;     // keepalive: how far the server has sent
  bool reply_requested = false;
  std::string_view payload;  // XLogData: the pgoutput message (valid until next read)
};

class PgReplicationConnection {
 public:
  using Clock = std::chrono::steady_clock;

  // `conninfo` is a libpq keyword/value string or URI; `password` may be empty. With
  // `replication` false it is an ordinary SQL connection (lag polling, check, setup).
  PgReplicationConnection(std::string conninfo, std::string password, bool replication = true);
  ~PgReplicationConnection();
  PgReplicationConnection(const PgReplicationConnection&) = delete;
  PgReplicationConnection& operator=(const PgReplicationConnection&) = delete;

  // For connections that must give up quickly on a dead network whatever the DSN says
  // (tcp_user_timeout, and connect_timeout rounded up to seconds): set before connect().
  void set_io_timeout(std::chrono::milliseconds timeout) { io_timeout_ = timeout; }

  void connect();  // throws PgError
  void close();
  [[nodiscard]] bool connected() const { return conn_ != nullptr; }
  // The connection's socket, or -1 (for shutdown(2) from another thread).
  [[nodiscard]] int socket() const;
  // "TLSv1.3, TLS_AES_256_GCM_SHA384" when libpq negotiated TLS (the DSN's sslmode), else "".
  [[nodiscard]] std::string encryption() const;

  [[nodiscard]] SystemIdentity identify_system();
  [[nodiscard]] std::optional<SlotInfo> slot_info(const std::string& slot);
  // Returns the slot's consistent point.
  Lsn create_slot(const std::string& slot, bool temporary);
  [[nodiscard]] bool publication_exists(const std::string& publication);
  // Runs a simple query (replication connections do not support the extended protocol)
  // and returns the first column of the first row, or nullopt when there is no row.
  [[nodiscard]] std::optional<std::string> query_value(const std::string& sql);
  // All rows of a simple query; NULL is nullopt. Throws PgError.
  using Rows = std::vector<std::vector<std::optional<std::string>>>;
  [[nodiscard]] Rows query(const std::string& sql);
  // Runs a statement that returns no rows. Throws PgError.
  void execute(const std::string& sql);

  void start_replication(const std::string& slot, const std::string& publication, Lsn start);

  // Returns the next frame already received without blocking (Kind::None when none is
  // buffered, Kind::End when the server ended the stream). Throws PgError on failure.
  // After None the caller waits for stream_socket() before it calls again: None may come
  // without a look at the socket when the last read from it was short.
  [[nodiscard]] ReplicationFrame try_read();
  // The socket to wait on (an EventLoop) before try_read; throws PgError when there is
  // none.
  [[nodiscard]] int stream_socket();
  // Sends a standby status update (write = flush = apply = `flush`) and flushes it.
  void send_status(Lsn flush, bool reply_requested = false);
  // Ends COPY mode cleanly after a final status update.
  void finish_stream();

  [[nodiscard]] static std::string quote_ident(std::string_view ident);
  [[nodiscard]] std::string quote_literal(std::string_view value);

 private:
  // Waits until the socket is readable or the deadline passes (finish_stream only).
  void wait_readable(Clock::time_point deadline);
  [[noreturn]] void fail(const std::string& context);
  void free_buffer();

  std::string conninfo_;
  std::string password_;
  bool replication_ = true;
  std::optional<std::chrono::milliseconds> io_timeout_;
  pg_conn* conn_ = nullptr;
  char* buffer_ = nullptr;  // last CopyData buffer from libpq
  // Bytes of the frames taken since libpq last read the socket; below kShortRead that
  // read was short, so the socket had nothing more.
  static constexpr std::size_t kShortRead = 8192;
  std::size_t since_read_ = kShortRead;
  bool encrypted_ = false;  // TLS or GSSAPI: always read before saying None
  bool streaming_ = false;
};

// Microseconds since 2000-01-01 00:00:00 UTC, the epoch of the replication protocol.
[[nodiscard]] std::int64_t pg_epoch_now_us();

}  // namespace walbust
