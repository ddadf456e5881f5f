#pragma once
// Keeps the rules bound to their tables while `run` or `dry-run` streams (RuleBinding
// holds the logic). Reads the catalog on its own SQL connection and its own thread, so a
// slow or silent database never stalls the stream (status replies, the receive timeout,
// SIGTERM): every kCatalogInterval in the background; at start, after a reload and before
// the changes of a relation the stream announces under an unknown OID or a new name, the
// stream waits for the read, at most kWaitLimit. RuleBinding is only touched by the
// stream's thread: the reader hands it a snapshot. Makes every outcome visible: a
// rename or recreation is a warning and walbust_schema_changes_total{kind}; a rule that
// cannot match is one error line per rule and reason, walbust_rule_unbound{rule} = 1, and
// a line in /healthz and STATUS= (unbound_lines()), until it is fixed.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "walbust/core/metrics.h"
#include "walbust/core/rule_binding.h"
#include "walbust/core/rules.h"
#include "walbust/io/pg_replication.h"

namespace walbust {

class TableBinder {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kCatalogInterval{10};
  // The longest the stream waits for a read it needs now; past it the binding stays as it
  // was and the read's result is applied when it arrives.
  static constexpr std::chrono::seconds kWaitLimit{5};
  // A read in flight this long is stuck on a connection that went silent (a middlebox that
  // keeps acknowledging): its socket is shut down so the reader fails and reconnects.
  static constexpr std::chrono::seconds kStuckLimit{30};

  // `registry` may be null (dry-run: logs only).
  TableBinder(std::string conninfo, std::string password, std::string publication,
              std::shared_ptr<const RuleSet> rules, MetricsRegistry* registry);
  ~TableBinder();
  TableBinder(const TableBinder&) = delete;
  TableBinder& operator=(const TableBinder&) = delete;

  // After a reload: rebinds and reads the catalog at once.
  void set_rules(std::shared_ptr<const RuleSet> rules);
  // Reads the catalog now (waiting at most kWaitLimit). False (logged once per outage) when
  // it cannot: the binding stays as it was.
  bool refresh();
  // Applies a background read that completed; starts one every kCatalogInterval.
  void tick(Clock::time_point now);
  // When tick() next reads the catalog: a loop waiting for data wakes up for it.
  [[nodiscard]] Clock::time_point next_refresh() const { return next_refresh_; }
  // Before the relation's changes are planned.
  void on_relation(const Relation& relation);

  void plan(const Change& change, std::vector<Action>& out, std::vector<RenderFailure>* failures,
            std::vector<PublishedKey>* published = nullptr) {
    binding_.plan(*rules_, change, out, failures, published);
  }
  // "rule NAME: REASON", one per unbound rule; thread-safe (the health check calls it).
  [[nodiscard]] std::vector<std::string> unbound_lines() const;

 private:
  struct Request {
    std::uint64_t id = 0;
    std::vector<std::pair<std::string, std::string>> tables;
    std::vector<std::uint32_t> oids;
  };
  struct Outcome {
    std::uint64_t id = 0;
    std::optional<CatalogSnapshot> snapshot;  // none: the read failed
    std::string error;
    bool connection_failed = false;  // not a query error: the stream reports the outage
  };

  std::uint64_t post_request();
  void apply(Outcome& outcome);
  void reader_loop();
  Outcome read(const Request& request);
  void report(const std::vector<SchemaChange>& changes);
  void publish_unbound();

  PgReplicationConnection conn_;  // the reader thread's
  std::string publication_;
  std::shared_ptr<const RuleSet> rules_;
  RuleBinding binding_;
  MetricsRegistry* registry_;
  bool failing_ = false;
  bool read_once_ = false;
  Clock::time_point next_refresh_{};
  std::map<std::string, std::string> reported_;  // rule -> reason already logged
  mutable std::mutex mu_;
  std::vector<std::string> lines_;  // guarded by mu_

  std::mutex reader_mu_;  // guards the four below
  std::condition_variable reader_cv_;
  std::optional<Request> request_;
  std::optional<Outcome> outcome_;
  bool stop_ = false;
  std::uint64_t next_id_ = 0;
  std::uint64_t current_id_ = 0;  // the newest request; older outcomes are stale (a reload)
  int socket_ = -1;               // the reader's connection, for shutdown(2); guarded
  bool in_flight_ = false;        // stream thread only
  Clock::time_point posted_{};    // stream thread only: when the read in flight was asked for
  std::thread reader_;
};

}  // namespace walbust
