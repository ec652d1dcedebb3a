// The built-in HTTP transport for the sync engine: Boost.Beast over Asio, C++20 coroutines, http:// and
// https:// (OpenSSL; system CAs, or the certificate pin an invite carries). With http_server.cc, one of the two files
// that include Beast (about 12 s to compile each).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "client/transport.h"

namespace dala::sync {

// A SOCKS5 proxy for every connection (Tor, Orbot): "socks5h://HOST:PORT" (or "socks5://", read the same
// way). Server names always go to the proxy to resolve, never to the local resolver; the proxy's own host
// is resolved locally (normally 127.0.0.1). kInvalidArgument for anything else.
struct ProxyAddress {
  std::string host, port;
};
Result<ProxyAddress> ParseProxyUrl(const std::string& url);

class HttpTransport : public Transport {
 public:
  // Without a proxy, connections go straight to the server, and an .onion address is refused (it would
  // otherwise be sent to the local DNS resolver, which tells the network who is being contacted).
  explicit HttpTransport(std::optional<ProxyAddress> proxy = std::nullopt);
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
