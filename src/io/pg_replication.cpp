#include "walbust/io/pg_replication.h"

#include <libpq-fe.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "walbust/core/byte_reader.h"
#include "walbust/core/message_text.h"

namespace walbust {
namespace {

constexpr std::int64_t kPgEpochOffsetUs = 946684800LL * 1000000LL;  // 1970 → 2000

void put_u64(std::vector<char>& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

// Server notices (e.g. "WARNING: terminating connection due to immediate shutdown") go
// through the logger instead of libpq's default of printing to stderr. Info level: the
// outage they announce gets its own warning from the code that sees the connection fail.
void forward_notice(void*, const char* message) {
  spdlog::info("postgres notice: {}", one_line(message));
}

struct ResultGuard {
  PGresult* r;
  ~ResultGuard() { PQclear(r); }
};

}  // namespace

std::int64_t pg_epoch_now_us() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return std::chrono::duration_cast<std::chrono::microseconds>(now).count() - kPgEpochOffsetUs;
}

PgReplicationConnection::PgReplicationConnection(std::string conninfo, std::string password,
                                                 bool replication)
    : conninfo_(std::move(conninfo)), password_(std::move(password)), replication_(replication) {}

PgReplicationConnection::~PgReplicationConnection() { close(); }

void PgReplicationConnection::connect() {
  close();
  // expand_dbname lets `dbname` carry the whole user conninfo (keywords or URI). Keywords
  // before it are defaults the user may override: bounded connects, and TCP keepalives
  // plus a user timeout so a silently dead network is noticed in about half a minute
  // instead of hours. The replication keyword and the password come after it and win.
  std::vector<const char*> keys = {
      "connect_timeout",  "keepalives_idle", "keepalives_interval",      "keepalives_count",
      "tcp_user_timeout", "dbname",          "fallback_application_name"};
  std::vector<const char*> values = {"10", "10", "5", "3", "30000", conninfo_.c_str(), "walbust"};
  // After dbname, so they override the DSN's own values.
  const std::string user_timeout = io_timeout_ ? std::to_string(io_timeout_->count()) : "";
  const std::string connect_timeout =
      io_timeout_ ? std::to_string(std::max<long long>(2, (io_timeout_->count() + 999) / 1000))
                  : "";
  if (io_timeout_) {
    keys.insert(keys.end(), {"tcp_user_timeout", "connect_timeout"});
    values.insert(values.end(), {user_timeout.c_str(), connect_timeout.c_str()});
  }
  if (replication_) {
    keys.push_back("replication");
    values.push_back("database");
  }
  if (!password_.empty()) {
    keys.push_back("password");
    values.push_back(password_.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectdbParams(keys.data(), values.data(), 1);
  if (conn_ == nullptr) throw PgError("", "cannot allocate a PostgreSQL connection");
  if (PQstatus(conn_) != CONNECTION_OK) {
    const std::string msg = one_line(PQerrorMessage(conn_));
    PQfinish(conn_);
    conn_ = nullptr;
    throw PgError("", "cannot connect to PostgreSQL: " + msg);
  }
  PQsetNoticeProcessor(conn_, forward_notice, nullptr);
}

int PgReplicationConnection::socket() const { return conn_ != nullptr ? PQsocket(conn_) : -1; }

std::string PgReplicationConnection::encryption() const {
  if (conn_ == nullptr || PQsslInUse(conn_) == 0) return "";
  const char* protocol = PQsslAttribute(conn_, "protocol");
  const char* cipher = PQsslAttribute(conn_, "cipher");
  return std::string(protocol != nullptr ? protocol : "TLS") + ", " +
         (cipher != nullptr ? cipher : "?");
}

void PgReplicationConnection::close() {
  free_buffer();
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
  streaming_ = false;
}

void PgReplicationConnection::free_buffer() {
  if (buffer_ != nullptr) {
    PQfreemem(buffer_);
    buffer_ = nullptr;
  }
}

void PgReplicationConnection::fail(const std::string& context) {
  const std::string msg = conn_ != nullptr ? one_line(PQerrorMessage(conn_)) : "not connected";
  throw PgError("", context + ": " + msg);
}

std::string PgReplicationConnection::quote_ident(std::string_view ident) {
  std::string out = "\"";
  for (char c : ident) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string PgReplicationConnection::quote_literal(std::string_view value) {
  char* q = PQescapeLiteral(conn_, value.data(), value.size());
  if (q == nullptr) fail("cannot quote a literal");
  std::string out(q);
  PQfreemem(q);
  return out;
}

namespace {
// Turns a failed result into a PgError carrying its SQLSTATE; frees the result.
[[noreturn]] void throw_result(PGconn* conn, PGresult* r, const std::string& context) {
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  std::string msg = one_line(PQresultErrorMessage(r));
  if (msg.empty()) msg = one_line(PQerrorMessage(conn));
  std::string sqlstate = state != nullptr ? state : "";
  PQclear(r);
  throw PgError(sqlstate, context + ": " + msg);
}

PGresult* exec_checked(PGconn* conn, const std::string& sql, ExecStatusType expected,
                       const std::string& context) {
  PGresult* r = PQexec(conn, sql.c_str());
  if (PQresultStatus(r) != expected) throw_result(conn, r, context);
  return r;
}
}  // namespace

PgReplicationConnection::Rows PgReplicationConnection::query(const std::string& sql) {
  ResultGuard g{exec_checked(conn_, sql, PGRES_TUPLES_OK, "query")};
  Rows rows;
  const int n = PQntuples(g.r);
  const int f = PQnfields(g.r);
  rows.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto& row = rows.emplace_back();
    for (int j = 0; j < f; ++j) {
      if (PQgetisnull(g.r, i, j)) {
        row.emplace_back(std::nullopt);
      } else {
        row.emplace_back(
            std::string(PQgetvalue(g.r, i, j), static_cast<std::size_t>(PQgetlength(g.r, i, j))));
      }
    }
  }
  return rows;
}

void PgReplicationConnection::execute(const std::string& sql) {
  PGresult* r = PQexec(conn_, sql.c_str());
  const auto status = PQresultStatus(r);
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
    PQclear(r);
    return;
  }
  throw_result(conn_, r, "statement");
}

SystemIdentity PgReplicationConnection::identify_system() {
  ResultGuard g{exec_checked(conn_, "IDENTIFY_SYSTEM", PGRES_TUPLES_OK, "IDENTIFY_SYSTEM")};
  if (PQntuples(g.r) != 1 || PQnfields(g.r) < 4)
    throw PgError("", "IDENTIFY_SYSTEM: unexpected result shape");
  SystemIdentity id;
  id.system_id = PQgetvalue(g.r, 0, 0);
  id.timeline = std::atoi(PQgetvalue(g.r, 0, 1));
  id.xlogpos = parse_lsn(PQgetvalue(g.r, 0, 2)).value_or(kInvalidLsn);
  if (!PQgetisnull(g.r, 0, 3)) id.dbname = PQgetvalue(g.r, 0, 3);
  return id;
}

std::optional<std::string> PgReplicationConnection::query_value(const std::string& sql) {
  const Rows rows = query(sql);
  if (rows.empty() || rows.front().empty()) return std::nullopt;
  return rows.front().front();
}

std::optional<SlotInfo> PgReplicationConnection::slot_info(const std::string& slot) {
  const std::string sql =
      "SELECT coalesce(plugin, ''), slot_type, coalesce(database::text, ''), active, "
      "coalesce(active_pid, 0), coalesce(confirmed_flush_lsn::text, '0/0'), "
      "coalesce(restart_lsn::text, '0/0'), coalesce(wal_status, '') "
      "FROM pg_catalog.pg_replication_slots WHERE slot_name = " +
      quote_literal(slot);
  ResultGuard g{exec_checked(conn_, sql, PGRES_TUPLES_OK, "reading pg_replication_slots")};
  if (PQntuples(g.r) == 0) return std::nullopt;
  SlotInfo info;
  info.plugin = PQgetvalue(g.r, 0, 0);
  info.slot_type = PQgetvalue(g.r, 0, 1);
  info.database = PQgetvalue(g.r, 0, 2);
  info.active = std::strcmp(PQgetvalue(g.r, 0, 3), "t") == 0;
  info.active_pid = std::atoi(PQgetvalue(g.r, 0, 4));
  info.confirmed_flush_lsn = parse_lsn(PQgetvalue(g.r, 0, 5)).value_or(kInvalidLsn);
  info.restart_lsn = parse_lsn(PQgetvalue(g.r, 0, 6)).value_or(kInvalidLsn);
  info.wal_status = PQgetvalue(g.r, 0, 7);
  return info;
}

bool PgReplicationConnection::publication_exists(const std::string& publication) {
  return query_value("SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = " +
                     quote_literal(publication))
      .has_value();
}

Lsn PgReplicationConnection::create_slot(const std::string& slot, bool temporary) {
  // NOEXPORT_SNAPSHOT: walbust never reads a snapshot, and an exported one would pin
  // the connection until the next command.
  const std::string sql = "CREATE_REPLICATION_SLOT " + quote_ident(slot) +
                          (temporary ? " TEMPORARY" : "") + " LOGICAL pgoutput NOEXPORT_SNAPSHOT";
  ResultGuard g{exec_checked(conn_, sql, PGRES_TUPLES_OK, "creating replication slot " + slot)};
  if (PQntuples(g.r) != 1 || PQnfields(g.r) < 2) return kInvalidLsn;
  return parse_lsn(PQgetvalue(g.r, 0, 1)).value_or(kInvalidLsn);
}

void PgReplicationConnection::start_replication(const std::string& slot,
                                                const std::string& publication, Lsn start) {
  // publication_names is a comma-separated list of identifiers, so the name is
  // double-quoted inside the single-quoted option value.
  const std::string pubs = quote_ident(publication);
  std::string escaped_pubs;
  for (char c : pubs) {
    if (c == '\'') escaped_pubs += '\'';
    escaped_pubs += c;
  }
  const std::string sql = "START_REPLICATION SLOT " + quote_ident(slot) + " LOGICAL " +
                          format_lsn(start) + " (proto_version '1', publication_names '" +
                          escaped_pubs + "')";
  PGresult* r = exec_checked(conn_, sql, PGRES_COPY_BOTH, "START_REPLICATION on slot " + slot);
  PQclear(r);
  streaming_ = true;
  since_read_ = kShortRead;
  encrypted_ = PQsslInUse(conn_) == 1 || PQgssEncInUse(conn_) == 1;
}

ReplicationFrame PgReplicationConnection::try_read() {
  free_buffer();
  ReplicationFrame frame;
  int len = PQgetCopyData(conn_, &buffer_, 1);
  if (len == 0) {
    // Everything libpq had is taken. After a short read the socket was empty then: say
    // so, and the caller waits for the socket (as it must after None) instead of trying
    // a read that would most likely find nothing, a system call per wake-up. Not over
    // TLS or GSSAPI encryption: their decrypted bytes wait in a buffer poll() does not
    // see, and only a read reaches them.
    if (since_read_ < kShortRead && !encrypted_) {
      since_read_ = kShortRead;
      return frame;
    }
    if (PQconsumeInput(conn_) == 0) fail("reading the replication stream");
    since_read_ = 0;
    len = PQgetCopyData(conn_, &buffer_, 1);
  }
  if (len == 0) {
    since_read_ = kShortRead;  // nothing arrived: read first next time
    return frame;
  }
  if (len > 0) since_read_ += static_cast<std::size_t>(len);
  if (len == -1) {
    // The server ended COPY: fetch the final result to learn why.
    streaming_ = false;
    PGresult* r = PQgetResult(conn_);
    std::string error;
    std::string sqlstate;
    if (r != nullptr && PQresultStatus(r) != PGRES_COMMAND_OK) {
      error = one_line(PQresultErrorMessage(r));
      const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      if (state != nullptr) sqlstate = state;
    }
    PQclear(r);
    while ((r = PQgetResult(conn_)) != nullptr) PQclear(r);
    if (!error.empty()) throw PgError(sqlstate, "replication stream ended: " + error);
    frame.kind = ReplicationFrame::Kind::End;
    return frame;
  }
  if (len < 0) fail("reading the replication stream");
  const std::string_view data(buffer_, static_cast<std::size_t>(len));
  ByteReader reader(data);
  try {
    const char type = static_cast<char>(reader.read_u8());
    if (type == 'w') {
      frame.kind = ReplicationFrame::Kind::XLogData;
      frame.data_start = reader.read_u64();
      (void)reader.read_u64();  // walEnd: not a safe acknowledgement position
      (void)reader.read_u64();  // send time
      frame.payload = data.substr(reader.offset());
    } else if (type == 'k') {
      frame.kind = ReplicationFrame::Kind::Keepalive;
      frame.wal_end = reader.read_u64();
      (void)reader.read_u64();  // send time
      frame.reply_requested = reader.read_u8() != 0;
    } else {
      throw PgError("", std::string("unexpected replication frame type '") + type + "'");
    }
  } catch (const PgError&) {
    throw;
  } catch (const std::exception& e) {
    throw PgError("", std::string("malformed replication frame: ") + e.what());
  }
  return frame;
}

int PgReplicationConnection::stream_socket() {
  const int fd = socket();
  if (fd < 0) fail("waiting for the replication stream");
  return fd;
}

void PgReplicationConnection::wait_readable(Clock::time_point deadline) {
  const auto now = Clock::now();
  int timeout_ms = 0;
  if (deadline > now) {
    timeout_ms =
        static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count());
  }
  pollfd pfd{PQsocket(conn_), POLLIN, 0};
  if (pfd.fd < 0) fail("waiting for the replication stream");
  const int rc = ::poll(&pfd, 1, timeout_ms);
  if (rc < 0 && errno != EINTR) throw PgError("", std::string("poll: ") + std::strerror(errno));
}

void PgReplicationConnection::send_status(Lsn flush, bool reply_requested) {
  std::vector<char> msg;
  msg.reserve(34);
  msg.push_back('r');
  put_u64(msg, flush);  // write
  put_u64(msg, flush);  // flush: the only field that moves confirmed_flush_lsn
  put_u64(msg, flush);  // apply
  put_u64(msg, static_cast<std::uint64_t>(pg_epoch_now_us()));
  msg.push_back(reply_requested ? 1 : 0);
  if (PQputCopyData(conn_, msg.data(), static_cast<int>(msg.size())) != 1)
    fail("sending a status update");
  if (PQflush(conn_) != 0) fail("flushing a status update");
}

void PgReplicationConnection::finish_stream() {
  if (conn_ == nullptr || !streaming_) return;
  streaming_ = false;
  if (PQputCopyEnd(conn_, nullptr) != 1 || PQflush(conn_) != 0) return;
  // Drain the server's side of COPY so it processes our last status update before the
  // connection closes; bounded, since the server might be gone or silent.
  const auto deadline = Clock::now() + std::chrono::seconds(2);
  bool ended = false;
  while (Clock::now() < deadline) {
    char* buf = nullptr;
    const int len = PQgetCopyData(conn_, &buf, 1);
    if (buf != nullptr) PQfreemem(buf);
    if (len > 0) continue;
    if (len < 0) {  // -1: the server ended COPY too; -2: error
      ended = len == -1;
      break;
    }
    wait_readable(std::min(deadline, Clock::now() + std::chrono::milliseconds(100)));
    if (PQconsumeInput(conn_) == 0) return;
  }
  // Collecting the final results only makes sense once the server ended COPY: before
  // that libpq keeps reporting the COPY in progress, and the caller closes anyway.
  if (!ended) return;
  PGresult* r;
  while ((r = PQgetResult(conn_)) != nullptr) {
    const bool copy = PQresultStatus(r) == PGRES_COPY_BOTH || PQresultStatus(r) == PGRES_COPY_OUT;
    PQclear(r);
    if (copy) return;
  }
}

}  // namespace walbust
