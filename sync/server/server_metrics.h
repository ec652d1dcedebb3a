// dala-server's metrics (docs/cli.md, "Metrics"): what is measured and under which names. Label values
// come only from fixed sets (a known path or "other", a status code, a refusal reason), never from what a
// client chose: no device key, report id or address can reach the metrics text.
#pragma once

#include <string>
#include <string_view>

#include "server/metric_registry.h"

namespace dala::server {

inline constexpr char kMetricsPath[] = "/metrics";

// Why the server refused or closed a connection before serving its request.
enum class Refusal {
  kConnectionLimit,  // a new connection while every allowed one was in a request (--max-connections)
  kEvicted,          // a connection waiting for a request, closed to make room for a new one
  kBodyBudget,       // a body that did not fit --max-buffered-mib (answered 503)
  kBodyTooLarge,     // a body over --max-body-mib (answered 413)
  kTimeout,          // part of a header, or a body, not sent in time
  kAcceptFailed,     // accept() failed, e.g. out of file descriptors
};

class ServerMetrics {
 private:
  metrics::Registry registry_;  // first: the members below are made in it

 public:
  ServerMetrics();
  std::string Render() const { return registry_.Render(); }

  // The HTTP front end: one answered request; a refusal.
  void Request(std::string_view target, int status, double seconds);
  void Refused(Refusal why);
  metrics::Gauge& connections_open;
  metrics::Counter& connections_accepted;

  // Storage (counted once committed, or made durable for attachment bytes).
  metrics::Counter& reports_stored;
  metrics::Gauge& reports_held;
  metrics::Counter& envelope_bytes_stored;
  metrics::Counter& attachment_bytes_stored;
  metrics::Gauge& attachment_bytes_held;
  metrics::Gauge& attachment_bytes_limit;
  metrics::Gauge& uploads_in_progress;
  metrics::Gauge& log_leaves;
  metrics::Gauge& nodes_apart;
  metrics::Histogram& commit_seconds;
  metrics::Histogram& pushes_per_commit;
  // One request to the S3 store: its operation (a fixed name), HTTP status (0: no answer), duration.
  void StorageRequest(std::string_view op, int status, double seconds);

 private:
  metrics::Family<metrics::Counter>& requests_;
  metrics::Family<metrics::Histogram>& request_seconds_;
  metrics::Family<metrics::Counter>& refused_;
  metrics::Family<metrics::Counter>& storage_requests_;
  metrics::Family<metrics::Histogram>& storage_seconds_;
};

// The endpoint label of a request target: the path if it is one the server serves, else "other".
std::string_view EndpointLabel(std::string_view target);

// Whether a client of the main listener may read /metrics: its peer is a loopback address (127.0.0.0/8,
// ::1, or either mapped into IPv6) and no proxy forwarded the request (`forwarded`: it carries
// X-Forwarded-For, Forwarded or X-Real-IP). A reverse proxy on the same host would otherwise hand the
// metrics to anyone on the internet.
bool MetricsClientAllowed(std::string_view peer, bool forwarded);

}  // namespace dala::server
