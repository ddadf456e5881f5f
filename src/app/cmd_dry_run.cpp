// `walbust dry-run`: what `run` would delete, on the real replication stream, without
// writing to Redis and without moving the production slot.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "commands.h"
#include "config_loading.h"
#include "exit_codes.h"
#include "signals.h"
#include "table_binder.h"
#include "walbust/core/change_stream.h"
#include "walbust/core/dry_run_format.h"
#include "walbust/core/status_schedule.h"
#include "walbust/io/event_loop.h"
#include "walbust/io/key_sink.h"
#include "walbust/io/pg_replication.h"
#include "walbust/io/redis_client.h"

namespace walbust {
namespace {

using Clock = std::chrono::steady_clock;

// SCAN stops counting a pattern's matches after this many keys (stated in the output).
constexpr std::size_t kScanLimit = 10000;

std::optional<std::string> decode_bytea_hex(const std::string& text) {
  if (text.size() < 2 || text[0] != '\\' || text[1] != 'x' || text.size() % 2 != 0)
    return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve((text.size() - 2) / 2);
  for (std::size_t i = 2; i < text.size(); i += 2) {
    const int hi = nibble(text[i]);
    const int lo = nibble(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

// Explains the errors a first-time user meets, in one line, instead of libpq's text.
std::string explain(const PgError& e, const Config& config) {
  const std::string what = e.what();
  if (what.find("wal_level") != std::string::npos) {
    return "the database does not have wal_level = logical (ALTER SYSTEM SET wal_level = logical; "
           "then restart "
           "PostgreSQL)";
  }
  if (e.sqlstate() == "42501" ||
      what.find("must be superuser or replication role") != std::string::npos ||
      what.find("permission denied") != std::string::npos) {
    return "the role in postgres.dsn may not use replication (ALTER ROLE ... REPLICATION;): " +
           what;
  }
  if (e.sqlstate() == "55006") {
    return "replication slot " + config.postgres.slot +
           " is in use by a running consumer (a walbust daemon?); --peek reads a slot only while "
           "nobody streams "
           "from it. Without --peek, dry-run follows new changes on a temporary slot instead";
  }
  return what;
}

class DryRun final : public ChangeHandler {
 public:
  DryRun(const DryRunOptions& options, LoadedConfig& loaded) : options_(options), loaded_(loaded) {
    if (options_.duration)
      deadline_ = Clock::now() +
                  std::chrono::milliseconds(static_cast<long long>(*options_.duration * 1000));
  }

  int run() {
    if (options_.check_redis) {
      const auto& t = loaded_.config.targets.front().settings;
      sink_ = make_key_sink(t, read_password_file(t.password_file));
      try {
        sink_->connect();
      } catch (const RedisError& e) {
        std::fprintf(stderr, "walbust dry-run: --check-redis: %s\n", e.what());
        return kExitFailure;
      }
    }
    int rc = kExitOk;
    try {
      // The same binding as run: renamed tables and partitions match their rules, and a
      // rule that cannot match is reported before the first change (follow(), peek()).
      const auto& pg = loaded_.config.postgres;
      binder_ = std::make_unique<TableBinder>(
          pg.dsn, read_password_file(pg.password_file), pg.publication,
          std::shared_ptr<const RuleSet>(std::shared_ptr<void>(), &loaded_.rules), nullptr);
      rc = options_.peek ? peek() : follow();
    } catch (const PgError& e) {
      std::fprintf(stderr, "walbust dry-run: %s\n", explain(e, loaded_.config).c_str());
      rc = kExitFailure;
    } catch (const StreamError& e) {
      std::fprintf(stderr, "walbust dry-run: %s\n", e.what());
      rc = kExitFailure;
    } catch (const RedisError& e) {
      std::fprintf(stderr, "walbust dry-run: --check-redis: %s\n", e.what());
      rc = kExitFailure;
    }
    if (!output_closed_) {
      emit(options_.format == "json" ? format_summary_json(summary_) + "\n"
                                     : "\n" + format_summary_text(summary_));
    }
    return rc;
  }

 private:
  [[nodiscard]] bool done() const {
    return output_closed_ || Signals::stop_requested() ||
           (options_.max_changes && summary_.changes >= *options_.max_changes) ||
           (deadline_ && Clock::now() >= *deadline_);
  }

  void emit(const std::string& text) {
    if (output_closed_) return;
    // A reader that went away (| head) ends the command quietly, not with SIGPIPE.
    if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() ||
        std::fflush(stdout) != 0) {
      output_closed_ = true;
    }
  }

  int follow() {
    const auto& pg = loaded_.config.postgres;
    PgReplicationConnection conn(pg.dsn, read_password_file(pg.password_file));
    conn.connect();
    if (!conn.publication_exists(pg.publication)) {
      std::fprintf(
          stderr, "walbust dry-run: publication %s does not exist (walbust setup prints the SQL)\n",
          pg.publication.c_str());
      return kExitFailure;
    }
    // Temporary: it disappears with this session, so the production slot never moves and
    // nothing is left behind even after kill -9.
    (void)binder_->refresh();  // after the checks above, which say what is wrong first
    const std::string slot = "walbust_dry_run_" + std::to_string(::getpid());
    const Lsn start = conn.create_slot(slot, /*temporary=*/true);
    conn.start_replication(slot, pg.publication, start);
    std::fprintf(stderr,
                 "walbust dry-run: following changes committed from %s on (temporary slot %s); "
                 "Ctrl-C to stop\n",
                 format_lsn(start).c_str(), slot.c_str());
    return stream(conn);
  }

  // Reads the stream until done, on the same status schedule as `run`: status updates every
  // status_interval, a reply requested from a silent server, which is gone after the
  // receive timeout.
  int stream(PgReplicationConnection& conn) {
    StatusSchedule schedule(loaded_.config.postgres.status_interval, Clock::now());
    EventLoop loop(Signals::wake_fd());
    auto send_status = [&](bool ask) {
      conn.send_status(last_end_, ask);
      schedule.status_sent(Clock::now(), ask);
    };
    while (!done()) {
      const ReplicationFrame frame = conn.try_read();
      if (frame.kind != ReplicationFrame::Kind::None) schedule.received(Clock::now());
      switch (frame.kind) {
        case ReplicationFrame::Kind::XLogData:
          binder_->tick(Clock::now());
          stream_.feed(frame.payload, frame.data_start, *this);
          break;
        case ReplicationFrame::Kind::Keepalive:
          if (frame.reply_requested) send_status(false);
          break;
        case ReplicationFrame::Kind::End:
          return kExitOk;
        case ReplicationFrame::Kind::None: {
          const auto now = Clock::now();
          const auto silence = schedule.silence(now);
          if (silence == StatusSchedule::Silence::Dead) throw PgError("", schedule.why_dead(now));
          if (silence == StatusSchedule::Silence::AskForReply) send_status(true);
          auto wait_until = schedule.next_wakeup(now, false);
          if (deadline_) wait_until = std::min(wait_until, *deadline_);
          (void)loop.run_once(wait_until, conn.stream_socket());
          break;
        }
      }
      if (schedule.status_due(Clock::now())) send_status(false);
    }
    return kExitOk;
  }

  int peek() {
    const auto& pg = loaded_.config.postgres;
    PgReplicationConnection conn(pg.dsn, read_password_file(pg.password_file),
                                 /*replication=*/false);
    conn.connect();
    const auto active = conn.query(
        "SELECT active, coalesce(active_pid, 0), plugin FROM pg_catalog.pg_replication_slots "
        "WHERE slot_name = " +
        conn.quote_literal(pg.slot));
    if (active.empty()) {
      std::fprintf(stderr,
                   "walbust dry-run: replication slot %s does not exist, so there is no backlog to "
                   "peek at\n",
                   pg.slot.c_str());
      return kExitFailure;
    }
    if (active[0][0] && *active[0][0] == "t") {
      std::fprintf(stderr,
                   "walbust dry-run: replication slot %s is in use by process %s (a running "
                   "walbust?); --peek reads "
                   "a slot only while nobody streams from it. Without --peek, dry-run follows new "
                   "changes on a "
                   "temporary slot instead\n",
                   pg.slot.c_str(), active[0][1].value_or("?").c_str());
      return kExitFailure;
    }
    if (!conn.publication_exists(pg.publication)) {
      std::fprintf(stderr, "walbust dry-run: publication %s does not exist\n",
                   pg.publication.c_str());
      return kExitFailure;
    }
    (void)binder_->refresh();
    // A cursor streams the backlog in pages instead of materialising it client-side.
    conn.execute("BEGIN READ ONLY");
    conn.execute(
        "DECLARE walbust_peek NO SCROLL CURSOR FOR SELECT lsn::text, xid::text, data FROM "
        "pg_catalog.pg_logical_slot_peek_binary_changes(" +
        conn.quote_literal(pg.slot) + ", NULL, NULL, 'proto_version', '1', 'publication_names', " +
        conn.quote_literal(PgReplicationConnection::quote_ident(pg.publication)) + ")");
    while (!done()) {
      const auto rows = conn.query("FETCH 1000 FROM walbust_peek");
      if (rows.empty()) break;
      for (const auto& row : rows) {
        if (done()) break;
        const Lsn lsn = row[0] ? parse_lsn(*row[0]).value_or(kInvalidLsn) : kInvalidLsn;
        const auto data = row[2] ? decode_bytea_hex(*row[2]) : std::nullopt;
        if (!data) throw StreamError("peek at " + format_lsn(lsn) + ": unexpected data encoding");
        stream_.feed(*data, lsn, *this);
      }
    }
    conn.execute("ROLLBACK");
    return kExitOk;
  }

  void on_begin(const TransactionBegin&) override {}
  void on_commit(const TransactionCommit& commit) override { last_end_ = commit.end_lsn; }
  void on_relation(const Relation& relation) override { binder_->on_relation(relation); }

  void on_change(const Change& change) override {
    if (done()) return;
    actions_.clear();
    published_.clear();
    binder_->plan(change, actions_, nullptr, &published_);
    const std::size_t deletes = actions_.size();
    append_publish_actions(loaded_.rules, published_, actions_);
    probes_.clear();
    if (sink_) probe();
    ++summary_.changes;
    if (!actions_.empty()) ++summary_.matched;
    summary_.keys += deletes;
    for (const auto& p : probes_) summary_.existing += p.exists ? 1 : 0;
    summary_.checked_redis = sink_ != nullptr;
    if (options_.format == "json") {
      emit(format_change_json(change, actions_, loaded_.rules, probes_, kScanLimit,
                              !loaded_.config.replicas.dsns.empty()) +
           "\n");
    } else {
      emit(format_change_text(change, actions_, loaded_.rules, probes_, kScanLimit,
                              !loaded_.config.replicas.dsns.empty()));
    }
  }

  // Read-only questions to Redis: EXISTS for keys (one pipeline), SCAN for patterns.
  void probe() {
    std::vector<std::string> keys;
    for (const auto& a : actions_) {
      if (a.kind != ActionKind::DeletePattern && a.kind != ActionKind::Publish)
        keys.push_back(a.key);
    }
    const auto exists = keys.empty() ? std::vector<bool>{} : sink_->exists(keys);
    std::size_t k = 0;
    for (const auto& a : actions_) {
      ActionProbe p;
      if (a.kind == ActionKind::Publish) {
        // Not probed, not counted: a published key is sent to subscribers, not deleted.
      } else if (a.kind == ActionKind::DeletePattern) {
        p.matches = sink_->count_matching(a.key, kScanLimit, p.truncated);
        p.exists = p.matches > 0;
      } else {
        p.exists = exists[k++];
      }
      probes_.push_back(p);
    }
  }

  const DryRunOptions& options_;
  LoadedConfig& loaded_;
  std::optional<Clock::time_point> deadline_;
  ChangeStream stream_;
  std::unique_ptr<TableBinder> binder_;
  std::unique_ptr<KeySink> sink_;
  std::vector<Action> actions_;
  std::vector<PublishedKey> published_;
  std::vector<ActionProbe> probes_;
  DryRunSummary summary_;
  Lsn last_end_ = kInvalidLsn;
  bool output_closed_ = false;
};

}  // namespace

int dry_run_command(const DryRunOptions& options) {
  auto loaded = load_config_and_rules(options.config_path);
  if (!loaded) return kExitUsage;
  if (options.check_redis && !loaded->config.redis_configured) {
    std::fprintf(stderr,
                 "walbust dry-run: --check-redis needs a redis: section (or WALBUST_REDIS_URL)\n");
    return kExitUsage;
  }
  setup_logging(loaded->config.log);
  Signals::install();
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  DryRun dry_run(options, *loaded);
  return dry_run.run();
}

}  // namespace walbust
