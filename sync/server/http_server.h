// The HTTP/1.1 front end of dala-server (Boost.Beast, C++20 coroutines). The only file that includes
// Beast on the server side: it compiles slowly.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

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
};

class HttpServer {
 public:
  HttpServer(ServerCore& core, HttpOptions options);
  ~HttpServer();
  Status Listen();     // binds; after this port() is known
  uint16_t port() const;
  void Run();          // serves until Stop(); returns when every connection is closed (or the grace ran out)
  void Stop();         // thread-safe and signal-safe to call from another thread

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dala::server
