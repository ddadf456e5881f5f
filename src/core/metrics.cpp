#include "walbust/core/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace walbust {

static_assert(std::atomic<double>::is_always_lock_free, "metric updates must not take a lock");

namespace {

enum Type { kCounter, kGauge, kHistogram };

constexpr const char* type_name(int type) {
  switch (type) {
    case kCounter:
      return "counter";
    case kGauge:
      return "gauge";
    default:
      return "histogram";
  }
}

bool valid_metric_name(std::string_view s) {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool valid_label_name(std::string_view s) {
  if (s.empty() || s.starts_with("__")) return false;  // "__" is reserved for Prometheus
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// Shortest round-trip spelling ("42", "0.25", "1e+06"), and Prometheus' spellings of the
// special values.
void append_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  }
}

void append_escaped(std::string& out, std::string_view s, bool quotes) {
  for (const char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

// `{a="x",b="y"}` (with an optional trailing `le`), or nothing without labels.
void append_labels(std::string& out, const Labels& labels, const std::string* le = nullptr) {
  if (labels.empty() && le == nullptr) return;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    append_escaped(out, v, true);
    out += '"';
  }
  if (le != nullptr) {
    if (!first) out += ',';
    out += "le=\"";
    out += *le;
    out += '"';
  }
  out += '}';
}

Labels sorted(Labels labels) {
  std::sort(labels.begin(), labels.end());
  return labels;
}

}  // namespace

void Counter::inc(double v) {
  if (v > 0) value_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  // An explicit +Inf bound is the implicit overflow bucket, not a second one.
  if (!bounds_.empty() && std::isinf(bounds_.back()) && bounds_.back() > 0) bounds_.pop_back();
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && !(bounds_[i - 1] < bounds_[i]))) {
      throw std::invalid_argument("histogram buckets must be finite and strictly increasing");
    }
  }
  buckets_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
  for (std::size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::observe(double v) {
  // Buckets are "less than or equal": the first bound >= v.
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
  buckets_[static_cast<std::size_t>(it - bounds_.begin())].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

std::vector<std::uint64_t> Histogram::cumulative_counts() const {
  std::vector<std::uint64_t> out(bounds_.size() + 1);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    out[i] = running;
  }
  return out;
}

std::uint64_t Histogram::count() const { return cumulative_counts().back(); }

struct MetricsRegistry::Family {
  struct Series {
    Labels labels;  // as first registered; rendered in this order
    Labels key;     // sorted, for lookup
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };
  std::string name;
  std::string help;
  int type = kCounter;
  std::vector<double> buckets;
  std::vector<Series> series;

  Series* find(const Labels& key) {
    for (auto& s : series) {
      if (s.key == key) return &s;
    }
    return nullptr;
  }
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Family& MetricsRegistry::family(std::string_view name, std::string_view help,
                                                 int type, const std::vector<double>* buckets) {
  if (!valid_metric_name(name)) {
    throw std::invalid_argument("invalid metric name '" + std::string(name) + "'");
  }
  for (auto& f : families_) {
    if (f->name != name) continue;
    if (f->type != type) {
      throw std::invalid_argument("metric '" + std::string(name) + "' already registered as " +
                                  type_name(f->type));
    }
    if (buckets != nullptr && Histogram(*buckets).bounds() != f->buckets) {
      throw std::invalid_argument("histogram '" + std::string(name) +
                                  "' already registered with other buckets");
    }
    return *f;
  }
  auto f = std::make_unique<Family>();
  f->name = name;
  f->help = help;
  f->type = type;
  if (buckets != nullptr) f->buckets = Histogram(*buckets).bounds();
  families_.push_back(std::move(f));
  return *families_.back();
}

namespace {
void check_labels(const Labels& labels, bool histogram) {
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const auto& k = labels[i].first;
    if (!valid_label_name(k) || (histogram && k == "le")) {
      throw std::invalid_argument("invalid label name '" + k + "'");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (labels[j].first == k) throw std::invalid_argument("duplicate label '" + k + "'");
    }
  }
}
}  // namespace

void MetricsRegistry::declare_counter(std::string_view name, std::string_view help) {
  std::lock_guard lock(mutex_);
  (void)family(name, help, kCounter, nullptr);
}

Counter& MetricsRegistry::counter(std::string_view name, std::string_view help,
                                  const Labels& labels) {
  check_labels(labels, false);
  std::lock_guard lock(mutex_);
  Family& f = family(name, help, kCounter, nullptr);
  Labels key = sorted(labels);
  if (auto* s = f.find(key)) return *s->counter;
  f.series.push_back({labels, std::move(key), std::make_unique<Counter>(), nullptr, nullptr});
  return *f.series.back().counter;
}

Gauge& MetricsRegistry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  check_labels(labels, false);
  std::lock_guard lock(mutex_);
  Family& f = family(name, help, kGauge, nullptr);
  Labels key = sorted(labels);
  if (auto* s = f.find(key)) return *s->gauge;
  f.series.push_back({labels, std::move(key), nullptr, std::make_unique<Gauge>(), nullptr});
  return *f.series.back().gauge;
}

Histogram& MetricsRegistry::histogram(std::string_view name, std::string_view help,
                                      std::vector<double> buckets, const Labels& labels) {
  check_labels(labels, true);
  std::lock_guard lock(mutex_);
  Family& f = family(name, help, kHistogram, &buckets);
  Labels key = sorted(labels);
  if (auto* s = f.find(key)) return *s->histogram;
  f.series.push_back(
      {labels, std::move(key), nullptr, nullptr, std::make_unique<Histogram>(f.buckets)});
  return *f.series.back().histogram;
}

std::string MetricsRegistry::render() const {
  std::string out;
  std::lock_guard lock(mutex_);
  for (const auto& f : families_) {
    out += "# HELP ";
    out += f->name;
    out += ' ';
    append_escaped(out, f->help, false);
    out += "\n# TYPE ";
    out += f->name;
    out += ' ';
    out += type_name(f->type);
    out += '\n';
    for (const auto& s : f->series) {
      if (f->type != kHistogram) {
        out += f->name;
        append_labels(out, s.labels);
        out += ' ';
        append_number(out, f->type == kCounter ? s.counter->value() : s.gauge->value());
        out += '\n';
        continue;
      }
      const Histogram& h = *s.histogram;
      const auto counts = h.cumulative_counts();
      for (std::size_t i = 0; i < counts.size(); ++i) {
        std::string le;
        append_number(le, i < h.bounds().size() ? h.bounds()[i] : INFINITY);
        out += f->name;
        out += "_bucket";
        append_labels(out, s.labels, &le);
        out += ' ';
        out += std::to_string(counts[i]);
        out += '\n';
      }
      out += f->name;
      out += "_sum";
      append_labels(out, s.labels);
      out += ' ';
      append_number(out, h.sum());
      out += '\n';
      out += f->name;
      out += "_count";
      append_labels(out, s.labels);
      out += ' ';
      out += std::to_string(counts.back());
      out += '\n';
    }
  }
  return out;
}

std::vector<double> exponential_buckets(double start, double factor, int count) {
  if (start <= 0 || factor <= 1 || count < 1) {
    throw std::invalid_argument("exponential_buckets needs start > 0, factor > 1, count >= 1");
  }
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(count));
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

}  // namespace walbust
