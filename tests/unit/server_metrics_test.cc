// dala-server's metrics text (Prometheus exposition format 0.0.4) and who may read it.
#include <gtest/gtest.h>

#include <atomic>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "server/metric_registry.h"
#include "server/server_metrics.h"

namespace dala::server {
namespace {

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool Has(const std::string& text, const std::string& line) {
  for (const auto& l : Lines(text))
    if (l == line) return true;
  return false;
}

TEST(MetricsText, CountersAndGaugesWithHelpAndType) {
  metrics::Registry r;
  auto& c = r.AddCounter("t_things_total", "Things.");
  auto& g = r.AddGauge("t_level", "A level.");
  c.Inc();
  c.Inc(41);
  g.Set(2.5);
  g.Add(-5);
  const std::string text = r.Render();
  EXPECT_EQ(text,
            "# HELP t_things_total Things.\n# TYPE t_things_total counter\nt_things_total 42\n"
            "# HELP t_level A level.\n# TYPE t_level gauge\nt_level -2.5\n");
}

TEST(MetricsText, LabelValuesAndHelpAreEscaped) {
  metrics::Registry r;
  auto& f = r.AddCounterFamily("t_requests_total", "Help with a \\ backslash\nand a \"quote\".", {"path", "code"});
  f.With({"a\\b\"c\nd", "200"}).Inc(3);
  const std::string text = r.Render();
  // Label values: backslash, double quote and line feed escaped; HELP: backslash and line feed only.
  EXPECT_TRUE(Has(text, "t_requests_total{path=\"a\\\\b\\\"c\\nd\",code=\"200\"} 3")) << text;
  EXPECT_TRUE(Has(text, "# HELP t_requests_total Help with a \\\\ backslash\\nand a \"quote\".")) << text;
  // Every line is a comment or a sample: no raw line feed from a value broke one in two.
  for (const auto& l : Lines(text)) EXPECT_TRUE(l.starts_with("# ") || l.starts_with("t_requests_total")) << l;
  EXPECT_EQ(metrics::EscapeLabelValue("plain"), "plain");
}

TEST(MetricsText, HistogramBucketsAreCumulativeAndInfIsTheCount) {
  metrics::Registry r;
  auto& h = r.AddHistogramFamily("t_seconds", "Durations.", {"endpoint"}, {0.25, 1, 5}).With({"/x"});
  for (double v : {0.1, 0.25, 0.9, 1.0, 3.0, 100.0, 200.0}) h.Observe(v);
  const std::string text = r.Render();
  EXPECT_TRUE(Has(text, "# TYPE t_seconds histogram")) << text;
  // An observation equal to a bound is in that bucket ("le"); each bucket counts all below it too.
  EXPECT_TRUE(Has(text, "t_seconds_bucket{endpoint=\"/x\",le=\"0.25\"} 2")) << text;
  EXPECT_TRUE(Has(text, "t_seconds_bucket{endpoint=\"/x\",le=\"1\"} 4")) << text;
  EXPECT_TRUE(Has(text, "t_seconds_bucket{endpoint=\"/x\",le=\"5\"} 5")) << text;
  EXPECT_TRUE(Has(text, "t_seconds_bucket{endpoint=\"/x\",le=\"+Inf\"} 7")) << text;
  EXPECT_TRUE(Has(text, "t_seconds_count{endpoint=\"/x\"} 7")) << text;
  EXPECT_TRUE(Has(text, "t_seconds_sum{endpoint=\"/x\"} 305.25")) << text;
}

// The +Inf bucket and _count agree in every scrape, also while observations go on.
TEST(MetricsText, HistogramStaysConsistentUnderConcurrentObservations) {
  metrics::Registry r;
  auto& h = r.AddHistogram("t_busy", "Busy.", {1, 2});
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 3; ++t)
    writers.emplace_back([&, t] {
      for (uint64_t i = 0; !stop; ++i) h.Observe(static_cast<double>((i + t) % 4));
    });
  for (int scrape = 0; scrape < 200; ++scrape) {
    std::string inf, count;
    for (const auto& l : Lines(r.Render())) {
      if (l.starts_with("t_busy_bucket{le=\"+Inf\"} ")) inf = l.substr(l.rfind(' ') + 1);
      if (l.starts_with("t_busy_count ")) count = l.substr(l.rfind(' ') + 1);
    }
    ASSERT_FALSE(inf.empty());
    ASSERT_EQ(inf, count);
  }
  stop = true;
  for (auto& w : writers) w.join();
}

TEST(MetricsText, Values) {
  EXPECT_EQ(metrics::FormatValue(0), "0");
  EXPECT_EQ(metrics::FormatValue(123456789012), "123456789012");
  EXPECT_EQ(metrics::FormatValue(0.001), "0.001");
  EXPECT_EQ(metrics::FormatValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(metrics::FormatValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(metrics::FormatValue(0.0 / 0.0), "NaN");
}

TEST(MetricsText, BadBucketsAndLabelCountsAreRefused) {
  metrics::Registry r;
  EXPECT_THROW(r.AddHistogram("t_a", "A.", {2, 1}), std::logic_error);
  EXPECT_THROW(r.AddHistogram("t_b", "B.", {1, 1}), std::logic_error);
  auto& f = r.AddCounterFamily("t_c_total", "C.", {"one"});
  EXPECT_THROW(f.With({"a", "b"}), std::logic_error);
}

// Only known paths become label values: whatever else a client sends is "other".
TEST(ServerMetrics, EndpointLabelsComeFromAFixedSet) {
  EXPECT_EQ(EndpointLabel("/v2/push"), "/v2/push");
  EXPECT_EQ(EndpointLabel("/v2/upload"), "/v2/upload");
  EXPECT_EQ(EndpointLabel("/metrics"), "/metrics");
  EXPECT_EQ(EndpointLabel("/v2/push?device=abc"), "other");
  EXPECT_EQ(EndpointLabel("/v1/push"), "other");
  ServerMetrics m;
  const std::string secret = "/v2/push/0123456789abcdef0123456789abcdef\"\n";
  m.Request(secret, 404, 0.002);
  const std::string text = m.Render();
  EXPECT_EQ(text.find("0123456789abcdef"), std::string::npos);
  EXPECT_TRUE(Has(text, "dala_server_http_requests_total{endpoint=\"other\",code=\"404\"} 1")) << text;
}

TEST(ServerMetrics, OnlyLoopbackClientsNoProxyForwardedMayRead) {
  for (const char* ok : {"127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"})
    EXPECT_TRUE(MetricsClientAllowed(ok, false)) << ok;
  for (const char* no : {"10.0.0.1", "192.168.1.20", "203.0.113.7", "::ffff:10.0.0.1", "2001:db8::1", "::",
                         "0.0.0.0", "", "localhost", "127.0.0.1 "})
    EXPECT_FALSE(MetricsClientAllowed(no, false)) << no;
  EXPECT_FALSE(MetricsClientAllowed("127.0.0.1", true));  // a reverse proxy on this host forwarded it
  EXPECT_FALSE(MetricsClientAllowed("::1", true));
}

}  // namespace
}  // namespace dala::server
