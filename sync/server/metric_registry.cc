#include "server/metric_registry.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace dala::server::metrics {

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

namespace {
// HELP text escapes backslash and line feed only (the format says so: a quote stays a quote).
std::string EscapeHelp(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}
}  // namespace

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Whole numbers (counts, bytes) as integers: exact up to 2^53, and what people expect to read.
  if (v == std::trunc(v) && std::fabs(v) < 9007199254740992.0) return std::to_string(static_cast<int64_t>(v));
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : "NaN";
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  if (!std::is_sorted(bounds_.begin(), bounds_.end()) ||
      std::adjacent_find(bounds_.begin(), bounds_.end()) != bounds_.end() ||
      std::any_of(bounds_.begin(), bounds_.end(), [](double b) { return !std::isfinite(b); }))
    throw std::logic_error("histogram bounds must be finite and strictly ascending");
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  // The first bucket whose upper bound is >= v ("le": less than or equal); past the last, +Inf.
  size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::counts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  for (size_t i = 0; i < out.size(); ++i) out[i] = counts_[i].load(std::memory_order_relaxed);
  return out;
}

void FamilyBase::Header(std::string& out, const char* type) const {
  out += "# HELP " + name_ + " " + EscapeHelp(help_) + "\n# TYPE " + name_ + " " + type + "\n";
}

void FamilyBase::Sample(std::string& out, std::string_view suffix, const std::vector<std::string>& values,
                        std::string_view extra, std::string_view value) const {
  out += name_;
  out += suffix;
  if (!values.empty() || !extra.empty()) {
    out += '{';
    for (size_t i = 0; i < values.size(); ++i) {
      if (i > 0) out += ',';
      out += label_names_[i] + "=\"" + EscapeLabelValue(values[i]) + "\"";
    }
    if (!extra.empty()) {
      if (!values.empty()) out += ',';
      out += extra;
    }
    out += '}';
  }
  out += ' ';
  out += value;
  out += '\n';
}

template <typename M>
M& Family<M>::With(const std::vector<std::string>& values) {
  if (values.size() != label_names_.size()) throw std::logic_error("metric " + name_ + ": wrong number of labels");
  std::lock_guard lock(mu_);
  auto& child = children_[values];
  if (!child) child = make_();
  return *child;
}

template <>
void Family<Counter>::Render(std::string& out) const {
  Header(out, "counter");
  std::lock_guard lock(mu_);
  for (const auto& [values, c] : children_) Sample(out, "", values, "", std::to_string(c->value()));
}

template <>
void Family<Gauge>::Render(std::string& out) const {
  Header(out, "gauge");
  std::lock_guard lock(mu_);
  for (const auto& [values, g] : children_) Sample(out, "", values, "", FormatValue(g->value()));
}

template <>
void Family<Histogram>::Render(std::string& out) const {
  Header(out, "histogram");
  std::lock_guard lock(mu_);
  for (const auto& [values, h] : children_) {
    const auto counts = h->counts();
    const auto& bounds = h->upper_bounds();
    uint64_t cumulative = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      cumulative += counts[i];
      std::string le = "le=\"" + (i < bounds.size() ? FormatValue(bounds[i]) : std::string("+Inf")) + "\"";
      Sample(out, "_bucket", values, le, std::to_string(cumulative));
    }
    Sample(out, "_sum", values, "", FormatValue(h->sum()));
    Sample(out, "_count", values, "", std::to_string(cumulative));  // == the +Inf bucket, by construction
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

namespace {
class GaugeFunction : public FamilyBase {
 public:
  GaugeFunction(std::string name, std::string help, std::function<double()> read)
      : FamilyBase(std::move(name), std::move(help), {}), read_(std::move(read)) {}
  void Render(std::string& out) const override {
    Header(out, "gauge");
    Sample(out, "", {}, "", FormatValue(read_()));
  }

 private:
  std::function<double()> read_;
};
}  // namespace

template <typename F>
F& Registry::Add(std::unique_ptr<F> family) {
  F& f = *family;
  families_.push_back(std::move(family));
  return f;
}

Counter& Registry::AddCounter(std::string name, std::string help) {
  return AddCounterFamily(std::move(name), std::move(help), {}).With({});
}

Gauge& Registry::AddGauge(std::string name, std::string help) {
  return Add(std::make_unique<Family<Gauge>>(std::move(name), std::move(help), std::vector<std::string>{},
                                             [] { return std::make_unique<Gauge>(); }))
      .With({});
}

void Registry::AddGaugeFunction(std::string name, std::string help, std::function<double()> read) {
  Add(std::make_unique<GaugeFunction>(std::move(name), std::move(help), std::move(read)));
}

Histogram& Registry::AddHistogram(std::string name, std::string help, std::vector<double> upper_bounds) {
  return AddHistogramFamily(std::move(name), std::move(help), {}, std::move(upper_bounds)).With({});
}

Family<Counter>& Registry::AddCounterFamily(std::string name, std::string help, std::vector<std::string> label_names) {
  return Add(std::make_unique<Family<Counter>>(std::move(name), std::move(help), std::move(label_names),
                                               [] { return std::make_unique<Counter>(); }));
}

Family<Histogram>& Registry::AddHistogramFamily(std::string name, std::string help,
                                                std::vector<std::string> label_names,
                                                std::vector<double> upper_bounds) {
  Histogram check(upper_bounds);  // refused here, when registered, rather than on first use
  return Add(std::make_unique<Family<Histogram>>(std::move(name), std::move(help), std::move(label_names),
                                                 [b = std::move(upper_bounds)] { return std::make_unique<Histogram>(b); }));
}

std::string Registry::Render() const {
  std::string out;
  for (const auto& f : families_) f->Render(out);
  return out;
}

}  // namespace dala::server::metrics
