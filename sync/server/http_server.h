// The HTTP/1.1 front end of dala-server (Boost.Beast, C++20 coroutines). The only file that includes
// Beast on the server side: it compiles slowly.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/log_line.h"
#include "server/server_core.h"
#include "base/status.h"

namespace dala::server {

struct HttpOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8443;           // 0: any free port (see HttpServer::port)
  int threads = 2;
  std::string tls_cert, tls_key;  // both set: serve HTTPS
  int header_timeout_s = 10;      // also the idle keep-alive limit
  int body_timeout_s = 60;
  int shutdown_grace_s = 10;      // SIGTERM: requests in flight get this long to finish
  size_t max_connections = 1024;
  size_t max_header_bytes = 8192;
  size_t max_body_bytes = 16u << 20;
  // Request bodies are read whole before their signature can be checked (uploads stream instead). Each
  // connection may buffer up to 64 KiB freely (a report's push); bigger bodies share this budget, and one
  // that does not fit is answered 503 at once. Bounds what unauthenticated peers can make the server hold.
  size_t max_buffered_bytes = 256u << 20;
  bool log_requests = true;       // JSON lines on stderr; never contents or keys
  // Client addresses are not logged unless the operator asks (issue 14, item 7). Then X-Forwarded-For is
  // honoured only when the connection comes from one of these proxy addresses.
  bool log_client_addresses = false;
  std::vector<std::string> trusted_proxies;
  // The metrics listener (run --metrics-listen): GET /metrics and nothing else, to any client that reaches
  // it. The main listener answers /metrics to loopback clients only (MetricsClientAllowed).
  bool metrics_only = false;
};

// The client's address for the log (exposed for tests): `peer`, or, if `peer` is a trusted proxy, the
// rightmost X-Forwarded-For hop that is not one.
std::string ClientAddress(const std::string& peer, std::string_view forwarded_for,
                          const std::vector<std::string>& trusted_proxies);


class HttpServer {
 public:
  HttpServer(ServerCore& core, HttpOptions options);
  ~HttpServer();
  Status Listen();     // binds; after this port() is known
  uint16_t port() const;
  void Run();          // serves until Stop(); returns when every connection is closed (or the grace ran out)
  void Stop();         // thread-safe and signal-safe to call from another thread
  // What a running server can change (SIGHUP): the TLS certificate and key, loaded again from `next`'s
  // files; the timeouts, the connection limit, request logging, client addresses and trusted proxies. New
  // connections and requests take them; a connection keeps the TLS context it started with, and nothing is
  // dropped. The rest of `next` (address, threads, body limits) is ignored: it takes a restart. On error
  // (a certificate that does not load, HTTPS switched on or off) nothing changes. Thread-safe.
  Status Reload(const HttpOptions& next);
  // True when the I/O threads run a task posted now within `within` (the systemd watchdog's health check).
  bool Responsive(std::chrono::milliseconds within);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dala::server
