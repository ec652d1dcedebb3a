// Counters, gauges and histograms, and their text in the Prometheus exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/). No library: the format is a few lines,
// and a scrape must never wait for the storage writer. Updates are lock-free (relaxed atomics); only a
// labelled family takes its mutex, to find or make the child for a set of label values.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace dala::server::metrics {

inline constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) { value_.fetch_add(d, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Fixed buckets, given by their ascending upper bounds; +Inf is implied. Each observation lands in one
// bucket; the text makes them cumulative.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double v);
  const std::vector<double>& upper_bounds() const { return bounds_; }
  // Per bucket (the last is +Inf), not cumulative; read one after another, so the text derives its
  // _count from these and stays consistent (+Inf == _count) while observations go on.
  std::vector<uint64_t> counts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

// A metric's name, help and type, and one child per set of label values (made on first use; its address
// is stable, so callers may keep the reference).
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, std::vector<std::string> label_names)
      : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {}
  virtual ~FamilyBase() = default;
  virtual void Render(std::string& out) const = 0;

 protected:
  void Header(std::string& out, const char* type) const;  // # HELP and # TYPE
  // `name{a="x",b="y"[,extra]} value`: extra is e.g. le="0.5" (already escaped).
  void Sample(std::string& out, std::string_view suffix, const std::vector<std::string>& values,
              std::string_view extra, std::string_view value) const;
  std::string name_, help_;
  std::vector<std::string> label_names_;
};

template <typename M>
class Family : public FamilyBase {
 public:
  using Make = std::function<std::unique_ptr<M>()>;
  Family(std::string name, std::string help, std::vector<std::string> label_names, Make make)
      : FamilyBase(std::move(name), std::move(help), std::move(label_names)), make_(std::move(make)) {}
  // Exactly one value per label name (a programming error otherwise: std::logic_error).
  M& With(const std::vector<std::string>& values);
  void Render(std::string& out) const override;

 private:
  Make make_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> children_;
};
template <> void Family<Counter>::Render(std::string& out) const;
template <> void Family<Gauge>::Render(std::string& out) const;
template <> void Family<Histogram>::Render(std::string& out) const;
extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

class Registry {
 public:
  Counter& AddCounter(std::string name, std::string help);
  Gauge& AddGauge(std::string name, std::string help);
  // A gauge read only when scraped (from /proc, say).
  void AddGaugeFunction(std::string name, std::string help, std::function<double()> read);
  Histogram& AddHistogram(std::string name, std::string help, std::vector<double> upper_bounds);
  Family<Counter>& AddCounterFamily(std::string name, std::string help, std::vector<std::string> label_names);
  Family<Histogram>& AddHistogramFamily(std::string name, std::string help, std::vector<std::string> label_names,
                                        std::vector<double> upper_bounds);
  // Every family in the order added: the exposition text.
  std::string Render() const;

 private:
  template <typename F>
  F& Add(std::unique_ptr<F> family);
  std::vector<std::unique_ptr<FamilyBase>> families_;  // filled before serving starts; read-only then
};

// A label value as the format wants it: backslash, double quote and line feed escaped.
std::string EscapeLabelValue(std::string_view v);
// A sample value: integers as integers, others in the shortest form that reads back the same; +Inf, -Inf, NaN.
std::string FormatValue(double v);

}  // namespace dala::server::metrics
