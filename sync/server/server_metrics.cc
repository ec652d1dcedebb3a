#include "server/server_metrics.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "protocol/http_api.h"

namespace dala::server {

namespace {

constexpr std::string_view kEndpoints[] = {protocol::kPathHealth, protocol::kPathEnrol, protocol::kPathPush,
                                           protocol::kPathUpload, kMetricsPath};

const char* RefusalLabel(Refusal why) {
  switch (why) {
    case Refusal::kConnectionLimit: return "connection_limit";
    case Refusal::kEvicted: return "evicted";
    case Refusal::kBodyBudget: return "body_budget";
    case Refusal::kBodyTooLarge: return "body_too_large";
    case Refusal::kTimeout: return "timeout";
    case Refusal::kAcceptFailed: return "accept_failed";
  }
  return "other";
}
constexpr Refusal kRefusals[] = {Refusal::kConnectionLimit, Refusal::kEvicted, Refusal::kBodyBudget,
                                 Refusal::kBodyTooLarge, Refusal::kTimeout, Refusal::kAcceptFailed};

// Requests take from a millisecond (health) to minutes (a large upload on a slow link).
const std::vector<double> kRequestBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                             0.5,   1,      2.5,   5,    10,    30,   60,  300};
// One transaction of the group-commit writer: mostly its fsync.
const std::vector<double> kCommitBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                            0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const std::vector<double> kPushesBuckets = {1, 2, 4, 8, 16, 32, 64, 128, 256};

// Read at each scrape from /proc/self: a few hundred bytes and one directory; 0 where there is no /proc.
double ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  int got = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return got == 2 ? static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) : 0;
}

double OpenFds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  double n = 0;
  const int own = ::dirfd(d);
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    if (std::atoi(e->d_name) != own) ++n;  // not the one reading the directory
  }
  ::closedir(d);
  return n;
}

double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

ServerMetrics::ServerMetrics()
    : connections_open(registry_.AddGauge("dala_server_connections_open", "Connections open now.")),
      connections_accepted(registry_.AddCounter("dala_server_connections_accepted_total",
                                                "Connections accepted since start.")),
      reports_stored(registry_.AddCounter("dala_server_reports_stored_total",
                                          "Report versions stored (committed) since start; duplicates not counted.")),
      reports_held(registry_.AddGauge("dala_server_reports_held",
                                      "Report versions the server holds: counted at start, plus those stored since.")),
      envelope_bytes_stored(registry_.AddCounter("dala_server_envelope_bytes_stored_total",
                                                 "Bytes of sealed reports (envelopes) stored since start.")),
      attachment_bytes_stored(registry_.AddCounter("dala_server_attachment_bytes_stored_total",
                                                   "Attachment bytes uploaded, verified and made durable since start.")),
      attachment_bytes_held(registry_.AddGauge("dala_server_attachment_bytes_held",
                                               "Attachment bytes on disk, as --max-storage-mib counts them.")),
      attachment_bytes_limit(registry_.AddGauge("dala_server_attachment_bytes_limit",
                                                "--max-storage-mib in bytes; 0: no limit but the disk's.")),
      uploads_in_progress(registry_.AddGauge("dala_server_uploads_in_progress",
                                             "Attachment uploads being received now.")),
      log_leaves(registry_.AddGauge("dala_server_log_leaves", "Leaves of the server's append-only log.")),
      nodes_apart(registry_.AddGauge("dala_server_nodes_apart",
                                     "Running nodes whose recent mark this node's attachment store lacks or cannot look "
                                     "for, or whose store lacks another's (not 0: uploads are refused).")),
      commit_seconds(registry_.AddHistogram("dala_server_commit_duration_seconds",
                                            "Time of one group-commit transaction of the storage writer, fsync included.",
                                            kCommitBuckets)),
      pushes_per_commit(registry_.AddHistogram("dala_server_pushes_per_commit",
                                               "Push requests stored together in one group-commit transaction.",
                                               kPushesBuckets)),
      requests_(registry_.AddCounterFamily("dala_server_http_requests_total",
                                           "HTTP requests answered, by endpoint (a known path or \"other\") and status code.",
                                           {"endpoint", "code"})),
      request_seconds_(registry_.AddHistogramFamily("dala_server_http_request_duration_seconds",
                                                    "Time from a request's header read to its answer ready to send, by endpoint.",
                                                    {"endpoint"}, kRequestBuckets)),
      refused_(registry_.AddCounterFamily("dala_server_connections_refused_total",
                                          "Connections refused or closed before their request was served, by reason.",
                                          {"reason"})),
      storage_requests_(registry_.AddCounterFamily(
          "dala_server_storage_requests_total",
          "Requests to the attachments' S3 store, by operation and HTTP status (0: no answer).", {"op", "code"})),
      storage_seconds_(registry_.AddHistogramFamily("dala_server_storage_request_duration_seconds",
                                                    "Time of one request to the attachments' S3 store, by operation.",
                                                    {"op"}, kRequestBuckets)) {
  // Every endpoint and reason from the start, at zero: rate() and increase() then see the first one.
  for (auto e : kEndpoints) request_seconds_.With({std::string(e)});
  request_seconds_.With({"other"});
  for (auto r : kRefusals) refused_.With({RefusalLabel(r)});
  registry_.AddGaugeFunction("dala_server_process_resident_memory_bytes", "Resident memory of the process.",
                             ResidentBytes);
  registry_.AddGaugeFunction("dala_server_process_open_fds", "File descriptors the process holds open.", OpenFds);
  const double started = WallSeconds();
  registry_.AddGaugeFunction("dala_server_start_time_seconds", "When this server started, in Unix time.",
                             [started] { return started; });
}

void ServerMetrics::Request(std::string_view target, int status, double seconds) {
  const std::string endpoint(EndpointLabel(target));
  requests_.With({endpoint, std::to_string(status)}).Inc();
  request_seconds_.With({endpoint}).Observe(seconds);
}

void ServerMetrics::StorageRequest(std::string_view op, int status, double seconds) {
  storage_requests_.With({std::string(op), std::to_string(status)}).Inc();
  storage_seconds_.With({std::string(op)}).Observe(seconds);
}

void ServerMetrics::Refused(Refusal why) { refused_.With({RefusalLabel(why)}).Inc(); }

std::string_view EndpointLabel(std::string_view target) {
  for (auto e : kEndpoints)
    if (target == e) return e;
  return "other";
}

bool MetricsClientAllowed(std::string_view peer, bool forwarded) {
  if (forwarded) return false;
  const std::string a(peer);
  unsigned char v4[4], v6[16];
  if (::inet_pton(AF_INET, a.c_str(), v4) == 1) return v4[0] == 127;
  if (::inet_pton(AF_INET6, a.c_str(), v6) != 1) return false;
  static const unsigned char kLoopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(v6, kLoopback6, 16) == 0) return true;
  return std::memcmp(v6, kMapped, 12) == 0 && v6[12] == 127;  // ::ffff:127.x.y.z
}

}  // namespace dala::server
