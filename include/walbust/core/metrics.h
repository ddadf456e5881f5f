#pragma once
// A small Prometheus registry: counters, gauges and histograms with labels, rendered in
// the text exposition format 0.0.4. Updates are lock-free atomics so the replication and
// Redis threads never wait on a scrape; only registration and render() take the mutex.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace walbust {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  // Negative increments are ignored: a counter only goes up (Prometheus relies on it to
  // detect restarts).
  void inc(double v = 1.0);
  [[nodiscard]] double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
  [[nodiscard]] double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Histogram {
 public:
  // `bounds` are the finite upper bounds, strictly increasing; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);

  void observe(double v);

  [[nodiscard]] const std::vector<double>& bounds() const { return bounds_; }
  // Cumulative counts, one per bound plus the final +Inf bucket (== count()).
  [[nodiscard]] std::vector<std::uint64_t> cumulative_counts() const;
  [[nodiscard]] std::uint64_t count() const;
  [[nodiscard]] double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  // Per-bucket (non-cumulative) counts; the last slot is the +Inf overflow. The total is
  // derived from them so a concurrent scrape never shows _count below the +Inf bucket.
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
  std::atomic<double> sum_{0.0};
};

class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Each returns a reference valid for the registry's lifetime; the same name and label set
  // (in any order) returns the same object. Throws std::invalid_argument for an invalid
  // metric or label name, or a name already registered with another type or other buckets.
  // Registration takes a mutex: resolve series once and keep the reference on hot paths.
  Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
  // Registers a labelled counter family before its first series exists, so /metrics
  // shows its HELP and TYPE (and dashboards find it) before anything was counted.
  void declare_counter(std::string_view name, std::string_view help);
  Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& histogram(std::string_view name, std::string_view help, std::vector<double> buckets,
                       const Labels& labels = {});

  // Text exposition format 0.0.4: families in registration order, one HELP/TYPE each.
  [[nodiscard]] std::string render() const;

 private:
  struct Family;
  Family& family(std::string_view name, std::string_view help, int type,
                 const std::vector<double>* buckets);

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Family>> families_;
};

// Bucket bounds `start, start*factor, ...` (count of them), as client libraries offer.
[[nodiscard]] std::vector<double> exponential_buckets(double start, double factor, int count);

}  // namespace walbust
