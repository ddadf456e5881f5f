#include "walbust/core/metrics.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <stdexcept>
#include <thread>
#include <vector>

namespace walbust {
namespace {

TEST(Metrics, RendersCountersAndGaugesWithLabels) {
  MetricsRegistry r;
  r.counter("walbust_changes_total", "Row changes decoded.",
            {{"table", "public.post"}, {"op", "insert"}})
      .inc();
  r.counter("walbust_changes_total", "Row changes decoded.",
            {{"table", "public.post"}, {"op", "update"}})
      .inc(3);
  r.gauge("walbust_replication_lag_bytes", "Bytes of WAL not yet acknowledged.").set(1536);
  r.counter("walbust_transactions_total", "Transactions.");
  EXPECT_EQ(r.render(),
            "# HELP walbust_changes_total Row changes decoded.\n"
            "# TYPE walbust_changes_total counter\n"
            "walbust_changes_total{table=\"public.post\",op=\"insert\"} 1\n"
            "walbust_changes_total{table=\"public.post\",op=\"update\"} 3\n"
            "# HELP walbust_replication_lag_bytes Bytes of WAL not yet acknowledged.\n"
            "# TYPE walbust_replication_lag_bytes gauge\n"
            "walbust_replication_lag_bytes 1536\n"
            "# HELP walbust_transactions_total Transactions.\n"
            "# TYPE walbust_transactions_total counter\n"
            "walbust_transactions_total 0\n");
}

TEST(Metrics, SameNameAndLabelsReturnSameObjectInAnyLabelOrder) {
  MetricsRegistry r;
  Counter& a = r.counter("c_total", "h", {{"a", "1"}, {"b", "2"}});
  Counter& b = r.counter("c_total", "h", {{"b", "2"}, {"a", "1"}});
  Counter& c = r.counter("c_total", "h", {{"a", "1"}, {"b", "3"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &c);
  a.inc(2);
  b.inc(0.5);
  b.inc(-7);  // ignored: counters never go down
  EXPECT_DOUBLE_EQ(a.value(), 2.5);
}

TEST(Metrics, GaugeAddAndFractions) {
  MetricsRegistry r;
  Gauge& g = r.gauge("g", "h");
  g.set(1.5);
  g.add(-2);
  EXPECT_DOUBLE_EQ(g.value(), -0.5);
  EXPECT_EQ(r.render(), "# HELP g h\n# TYPE g gauge\ng -0.5\n");
}

TEST(Metrics, EscapesLabelValuesAndHelp) {
  MetricsRegistry r;
  r.counter("e_total", "back\\slash and\nnewline \"quoted\"", {{"v", "a\\b\"c\nd"}}).inc();
  EXPECT_EQ(r.render(),
            "# HELP e_total back\\\\slash and\\nnewline \"quoted\"\n"
            "# TYPE e_total counter\n"
            "e_total{v=\"a\\\\b\\\"c\\nd\"} 1\n");
}

TEST(Metrics, RendersHistogramsCumulativeWithInf) {
  MetricsRegistry r;
  Histogram& h = r.histogram("walbust_batch_keys", "Keys per pipeline.", {1, 10, 100});
  for (double v : {1.0, 5.0, 10.0, 50.0, 1000.0}) h.observe(v);
  Histogram& t = r.histogram("lat_seconds", "Latency.", {0.005, 0.25}, {{"target", "a"}});
  t.observe(0.1);
  EXPECT_EQ(h.count(), 5u);
  EXPECT_DOUBLE_EQ(h.sum(), 1066);
  EXPECT_EQ(r.render(),
            "# HELP walbust_batch_keys Keys per pipeline.\n"
            "# TYPE walbust_batch_keys histogram\n"
            "walbust_batch_keys_bucket{le=\"1\"} 1\n"
            "walbust_batch_keys_bucket{le=\"10\"} 3\n"
            "walbust_batch_keys_bucket{le=\"100\"} 4\n"
            "walbust_batch_keys_bucket{le=\"+Inf\"} 5\n"
            "walbust_batch_keys_sum 1066\n"
            "walbust_batch_keys_count 5\n"
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{target=\"a\",le=\"0.005\"} 0\n"
            "lat_seconds_bucket{target=\"a\",le=\"0.25\"} 1\n"
            "lat_seconds_bucket{target=\"a\",le=\"+Inf\"} 1\n"
            "lat_seconds_sum{target=\"a\"} 0.1\n"
            "lat_seconds_count{target=\"a\"} 1\n");
}

TEST(Metrics, HistogramWithoutBoundsHasOnlyInf) {
  MetricsRegistry r;
  r.histogram("h", "x", {}).observe(3);
  EXPECT_EQ(r.render(),
            "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 3\nh_count 1\n");
}

TEST(Metrics, SpecialValues) {
  MetricsRegistry r;
  r.gauge("a", "h").set(1e6);
  r.gauge("b", "h").set(-INFINITY);
  r.gauge("c", "h").set(NAN);
  const std::string out = r.render();
  EXPECT_NE(out.find("\na 1e+06\n"), std::string::npos) << out;
  EXPECT_NE(out.find("\nb -Inf\n"), std::string::npos) << out;
  EXPECT_NE(out.find("\nc NaN\n"), std::string::npos) << out;
}

TEST(Metrics, RejectsInvalidRegistrations) {
  MetricsRegistry r;
  EXPECT_THROW(r.counter("1bad", "h"), std::invalid_argument);
  EXPECT_THROW(r.counter("bad-name", "h"), std::invalid_argument);
  EXPECT_THROW(r.counter("ok", "h", {{"__reserved", "x"}}), std::invalid_argument);
  EXPECT_THROW(r.counter("ok", "h", {{"a", "x"}, {"a", "y"}}), std::invalid_argument);
  EXPECT_THROW(r.histogram("hh", "h", {1}, {{"le", "x"}}), std::invalid_argument);
  EXPECT_THROW(r.histogram("hh", "h", {2, 1}), std::invalid_argument);
  r.counter("dup", "h");
  EXPECT_THROW(r.gauge("dup", "h"), std::invalid_argument);
  r.histogram("hist", "h", {1, 2});
  EXPECT_THROW(r.histogram("hist", "h", {1, 3}), std::invalid_argument);
  EXPECT_NO_THROW(r.histogram("hist", "h", {1, 2, INFINITY}));
}

TEST(Metrics, ExponentialBuckets) {
  EXPECT_EQ(exponential_buckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
  EXPECT_THROW(exponential_buckets(0, 2, 4), std::invalid_argument);
}

// Updates from several threads race with registration and scrapes; run under the
// sanitizer build this also checks for data races the atomics are meant to prevent.
TEST(Metrics, ConcurrentUpdatesAndRenders) {
  MetricsRegistry r;
  constexpr int kThreads = 4;
  constexpr int kIterations = 20000;
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) {
      const std::string out = r.render();
      ASSERT_EQ(out.find("nan"), std::string::npos);
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&r, t] {
      Counter& c = r.counter("n_total", "h");
      Histogram& h = r.histogram("h", "h", {1, 2, 4});
      for (int i = 0; i < kIterations; ++i) {
        c.inc();
        h.observe(i % 5);
        r.gauge("g", "h", {{"worker", std::to_string(t)}}).set(i);
      }
    });
  }
  for (auto& w : workers) w.join();
  done = true;
  scraper.join();
  EXPECT_DOUBLE_EQ(r.counter("n_total", "h").value(), kThreads * kIterations);
  const Histogram& h = r.histogram("h", "h", {1, 2, 4});
  EXPECT_EQ(h.count(), static_cast<std::uint64_t>(kThreads * kIterations));
  EXPECT_EQ(
      h.cumulative_counts(),
      (std::vector<std::uint64_t>{kThreads * kIterations * 2 / 5, kThreads * kIterations * 3 / 5,
                                  kThreads * kIterations, kThreads * kIterations}));
  EXPECT_DOUBLE_EQ(h.sum(), kThreads * (kIterations / 5) * (0 + 1 + 2 + 3 + 4));
}

}  // namespace
}  // namespace walbust
