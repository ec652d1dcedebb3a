// The built-in HTTP transport for the sync engine: Boost.Beast over Asio, C++20 coroutines, http:// and
// https:// (OpenSSL; system CAs, or the certificate pin an invite carries). With http_server.cc, one of the two files
// that include Beast (about 12 s to compile each).
#pragma once

#include <memory>

#include "client/sync_engine.h"

namespace dala::sync {

class HttpTransport : public Transport {
 public:
  HttpTransport();
  ~HttpTransport() override;
  Result<HttpResponse> Post(const std::string& base_url, const HttpRequest& request, int64_t timeout_ms,
                            const std::string& tls_pin) override;
  void Cancel() override;
  void Reset() override;
  // HTTP bytes written and read so far (request and status lines, headers and bodies; not TCP/TLS framing).
  uint64_t bytes_sent() const;
  uint64_t bytes_received() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dala::sync
