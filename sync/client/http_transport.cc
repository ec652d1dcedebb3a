#include "client/http_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <atomic>
#include <optional>

#include "protocol/http_api.h"
#include "protocol/tls_pin.h"

namespace dala::sync {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

struct Url {
  bool tls = false;
  std::string host, port, prefix;
  std::string key() const { return (tls ? "https://" : "http://") + host + ":" + port; }
};

Result<Url> ParseUrl(const std::string& s) {
  Url u;
  std::string rest;
  if (s.rfind("http://", 0) == 0) rest = s.substr(7);
  else if (s.rfind("https://", 0) == 0) { u.tls = true; rest = s.substr(8); }
  else return Status(Code::kInvalidArgument, "a server address must start with http:// or https://");
  // The host ends at the path, the query or the fragment (an ".onion?x" host is still an onion).
  auto slash = rest.find_first_of("/?#");
  std::string hostport = rest.substr(0, slash);
  u.prefix = slash == std::string::npos || rest[slash] != '/' ? "" : rest.substr(slash);
  while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
  if (!hostport.empty() && hostport[0] == '[') {  // [v6]:port
    auto close = hostport.find(']');
    if (close == std::string::npos) return Status(Code::kInvalidArgument, "malformed server address");
    u.host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size() && hostport[close + 1] == ':') u.port = hostport.substr(close + 2);
  } else {
    auto colon = hostport.rfind(':');
    u.host = hostport.substr(0, colon);
    if (colon != std::string::npos) u.port = hostport.substr(colon + 1);
  }
  if (u.port.empty()) u.port = u.tls ? "443" : "80";
  if (u.host.empty()) return Status(Code::kInvalidArgument, "the server address has no host");
  return u;
}

bool IsOnion(std::string host) {
  for (char& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!host.empty() && host.back() == '.') host.pop_back();
  return host.size() > 6 && host.ends_with(".onion");
}

bool ValidPort(const std::string& p) {
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) return false;
  int v = std::stoi(p);
  return v >= 1 && v <= 65535;
}

// SOCKS5 (RFC 1928) reply codes, in words.
const char* SocksError(uint8_t code) {
  switch (code) {
    case 1: return "general failure";
    case 2: return "connection not allowed by its rules";
    case 3: return "network unreachable";
    case 4: return "host unreachable";
    case 5: return "connection refused";
    case 6: return "TTL expired";
    case 7: return "command not supported";
    case 8: return "address type not supported";
    default: return "unknown error";
  }
}

}  // namespace

Result<ProxyAddress> ParseProxyUrl(const std::string& url) {
  std::string rest;
  if (url.rfind("socks5h://", 0) == 0) rest = url.substr(10);
  else if (url.rfind("socks5://", 0) == 0) rest = url.substr(9);
  else return Status(Code::kInvalidArgument, "a proxy must be socks5h://HOST:PORT (for Tor: socks5h://127.0.0.1:9050)");
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  ProxyAddress p;
  if (!rest.empty() && rest[0] == '[') {
    auto close = rest.find(']');
    if (close == std::string::npos || close + 1 >= rest.size() || rest[close + 1] != ':')
      return Status(Code::kInvalidArgument, "the proxy address is malformed; use socks5h://HOST:PORT");
    p.host = rest.substr(1, close - 1);
    p.port = rest.substr(close + 2);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string::npos)
      return Status(Code::kInvalidArgument, "the proxy address needs a port: socks5h://HOST:PORT");
    p.host = rest.substr(0, colon);
    p.port = rest.substr(colon + 1);
  }
  if (p.host.empty() || p.host.find_first_of("/@ ") != std::string::npos || !ValidPort(p.port))
    return Status(Code::kInvalidArgument, "the proxy address is malformed; use socks5h://HOST:PORT");
  return p;
}

struct HttpTransport::Impl {
  std::optional<ProxyAddress> proxy;
  asio::io_context ioc;
  std::atomic<bool> cancelled{false};
  uint64_t sent = 0, received = 0;
  ssl::context tls_ctx{ssl::context::tls_client};
  std::string connected_to;  // Url::key() of the open connection
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;

  Impl() {
    tls_ctx.set_default_verify_paths();
    tls_ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                        ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  }

  void Close() {
    boost::system::error_code ec;
    if (plain) plain->socket().close(ec);
    if (secure) beast::get_lowest_layer(*secure).socket().close(ec);
    plain.reset();
    secure.reset();
    connected_to.clear();
  }

  beast::tcp_stream& Lowest() { return secure ? beast::get_lowest_layer(*secure) : *plain; }

  // One step of the SOCKS5 exchange: writes `out` (if any), reads exactly in->size() bytes. An empty
  // string on success, else what went wrong.
  asio::awaitable<std::string> SocksStep(std::vector<uint8_t> out, std::vector<uint8_t>* in) {
    if (!out.empty()) {
      auto [wec, wn] = co_await asio::async_write(Lowest(), asio::buffer(out), kTuple);
      if (wec) co_return "closed the connection (" + wec.message() + ")";
    }
    auto [rec, rn] = co_await asio::async_read(Lowest(), asio::buffer(*in), kTuple);
    if (rec) co_return "closed the connection or did not answer in time (" + rec.message() + ")";
    co_return std::string();
  }

  // Through the proxy: a SOCKS5 CONNECT (RFC 1928) to the server's name, which the proxy resolves; no
  // authentication. Under the connection's deadline, like everything else: a proxy that stalls times out.
  asio::awaitable<void> SocksConnect(const Url& u, Status* st) {
    std::string error;
    std::vector<uint8_t> in(2);
    if (u.host.size() > 255) error = "cannot take a host name that long";
    std::vector<uint8_t> greeting = {5, 1, 0};  // version 5, one method offered: no authentication
    if (error.empty()) error = co_await SocksStep(std::move(greeting), &in);
    if (error.empty() && (in[0] != 5 || in[1] != 0))
      error = "is not a SOCKS5 proxy that takes connections without authentication";
    if (error.empty()) {
      // CONNECT, reserved, the address: an IP literal as such, a name as a domain name (never resolved
      // here), then the port.
      std::vector<uint8_t> req = {5, 1, 0};
      uint8_t ip[16];
      if (::inet_pton(AF_INET, u.host.c_str(), ip) == 1) {
        req.push_back(1);
        req.insert(req.end(), ip, ip + 4);
      } else if (::inet_pton(AF_INET6, u.host.c_str(), ip) == 1) {
        req.push_back(4);
        req.insert(req.end(), ip, ip + 16);
      } else {
        req.push_back(3);
        req.push_back(static_cast<uint8_t>(u.host.size()));
        req.insert(req.end(), u.host.begin(), u.host.end());
      }
      int port = std::stoi(u.port);
      req.push_back(static_cast<uint8_t>(port >> 8));
      req.push_back(static_cast<uint8_t>(port & 0xff));
      in.assign(4, 0);
      error = co_await SocksStep(std::move(req), &in);
    }
    if (error.empty() && in[0] != 5) error = "answered something that is not SOCKS5";
    if (error.empty() && in[1] != 0) error = "could not reach " + u.host + ":" + u.port + ": " + SocksError(in[1]);
    if (error.empty()) {
      // The bound address that follows (IPv4, a name, or IPv6), then a port: read and ignored.
      uint8_t type = in[3];
      size_t rest = type == 1 ? 4 + 2 : type == 4 ? 16 + 2 : 0;
      if (type == 3) {
        in.assign(1, 0);
        error = co_await SocksStep(std::vector<uint8_t>(), &in);
        rest = size_t{in[0]} + 2;
      }
      if (error.empty() && rest == 0) error = "answered with an unknown address type";
      if (error.empty()) {
        in.assign(rest, 0);
        error = co_await SocksStep(std::vector<uint8_t>(), &in);
      }
    }
    if (!error.empty()) {
      *st = Status(Code::kIo, "the proxy " + proxy->host + ":" + proxy->port + " " + error);
      Close();
      co_return;
    }
    *st = Status::Ok();
  }

  asio::awaitable<void> Connect(const Url& u, std::chrono::milliseconds timeout, const std::string& pin, Status* st) {
    Close();
    if (!proxy && IsOnion(u.host)) {
      // Never handed to the local resolver: that would tell the network which onion service is contacted.
      *st = Status(Code::kInvalidArgument, "the address " + u.host +
                                               " is an onion service: it needs a Tor proxy (socks5h://127.0.0.1:9050); "
                                               "it was not looked up");
      co_return;
    }
    // With a proxy only the proxy's own address is resolved here; the server's name goes to the proxy.
    const std::string& connect_host = proxy ? proxy->host : u.host;
    const std::string& connect_port = proxy ? proxy->port : u.port;
    tcp::resolver resolver(ioc);
    auto [rec, results] = co_await resolver.async_resolve(connect_host, connect_port, kTuple);
    if (cancelled) co_return;  // cut off while resolving: connect to nothing (Post is letting this end)
    if (rec) {
      *st = Status(Code::kIo, (proxy ? "cannot resolve the proxy " : "cannot resolve ") + connect_host + ": " +
                                  rec.message());
      co_return;
    }
    if (u.tls) {
      secure.emplace(ioc, tls_ctx);
      if (!SSL_set_tlsext_host_name(secure->native_handle(), u.host.c_str())) {
        *st = Status(Code::kIo, "cannot set the TLS server name");
        co_return;
      }
      if (pin.empty()) {
        secure->set_verify_mode(ssl::verify_peer);
        secure->set_verify_callback(ssl::host_name_verification(u.host));
      } else {
        // Pinned: the certificate's key must match the invite's pin; the CA chain is not needed.
        secure->set_verify_mode(ssl::verify_peer);
        secure->set_verify_callback([pin](bool, ssl::verify_context& ctx) {
          X509_STORE_CTX* sctx = ctx.native_handle();
          if (X509_STORE_CTX_get_error_depth(sctx) > 0) return true;
          X509* cert = X509_STORE_CTX_get_current_cert(sctx);
          return cert != nullptr && tls::SpkiPin(cert) == pin;
        });
      }
    } else {
      plain.emplace(ioc);
    }
    Lowest().expires_after(timeout);
    auto [cec, ep] = co_await Lowest().async_connect(results, kTuple);
    if (cec) {
      *st = Status(Code::kIo, (proxy ? "cannot connect to the proxy " : "cannot connect to ") + connect_host + ":" +
                                  connect_port + ": " + cec.message());
      Close();
      co_return;
    }
    if (proxy) {
      co_await SocksConnect(u, st);
      if (!st->ok()) co_return;
    }
    if (secure) {
      auto [hec] = co_await secure->async_handshake(ssl::stream_base::client, kTuple);
      if (hec) {
        *st = Status(Code::kVerify, "TLS with " + u.host + " failed (certificate not trusted or pin mismatch): " +
                                        hec.message());
        Close();
        co_return;
      }
    }
    connected_to = u.key();
    *st = Status::Ok();
  }

  template <typename Stream>
  asio::awaitable<void> Exchange(Stream& s, const http::request<http::string_body>& req, HttpResponse* out,
                                 Status* st) {
    auto [wec, wn] = co_await http::async_write(s, req, kTuple);
    sent += wn;
    if (wec) {
      *st = Status(Code::kIo, "sending failed: " + wec.message());
      co_return;
    }
    co_await ReadResponse(s, out, st);
  }

  template <typename Stream>
  asio::awaitable<void> ReadResponse(Stream& s, HttpResponse* out, Status* st) {
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    auto [rec, rn] = co_await http::async_read(s, buf, parser, kTuple);
    received += rn;
    if (rec) {
      *st = Status(Code::kIo, "no answer: " + rec.message());
      co_return;
    }
    auto res = parser.release();
    out->status = static_cast<int>(res.result_int());
    out->body = std::move(res.body());
    if (!res.keep_alive()) Close();
    *st = Status::Ok();
  }

  // An upload: the body is a range of the attachment's encrypted file, read and sent a piece at a time.
  template <typename Stream>
  asio::awaitable<void> ExchangeUpload(Stream& s, const Url& u, const HttpRequest& request, HttpResponse* out,
                                       Status* st) {
    int fd = ::open(request.file_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      *st = Status(Code::kNotFound, "the attachment's file cannot be opened");
      co_return;
    }
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    http::request<http::buffer_body> req{http::verb::post, u.prefix + request.path, 11};
    req.set(http::field::host, u.host);
    req.set(http::field::content_type, protocol::kUploadContentType);
    req.set(protocol::kUploadHeader, request.upload_header);
    req.keep_alive(true);
    req.content_length(request.file_length);
    req.body().data = nullptr;
    req.body().more = request.file_length > 0;
    http::request_serializer<http::buffer_body> sr{req};
    auto [hec, hn] = co_await http::async_write_header(s, sr, kTuple);
    sent += hn;
    if (hec) {
      *st = Status(Code::kIo, "sending failed: " + hec.message());
      co_return;
    }
    std::vector<uint8_t> piece(std::min<uint64_t>(request.file_length, 256u << 10));
    for (uint64_t done = 0; done < request.file_length;) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(piece.size(), request.file_length - done));
      ssize_t n = ::pread(fd, piece.data(), want, static_cast<off_t>(request.file_offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        *st = Status(Code::kVerify, "the attachment's file is shorter than recorded");
        Close();
        co_return;
      }
      done += static_cast<uint64_t>(n);
      req.body().data = piece.data();
      req.body().size = static_cast<size_t>(n);
      req.body().more = done < request.file_length;
      auto [wec, wn] = co_await http::async_write(s, sr, kTuple);
      if (wec == http::error::need_buffer) wec = {};
      sent += static_cast<uint64_t>(n);
      if (wec) {
        *st = Status(Code::kIo, "sending failed: " + wec.message());
        co_return;
      }
    }
    if (!sr.is_done()) {
      req.body().data = nullptr;
      req.body().size = 0;
      req.body().more = false;
      auto [fec, fn] = co_await http::async_write(s, sr, kTuple);
      if (fec && fec != http::error::need_buffer) {
        *st = Status(Code::kIo, "sending failed: " + fec.message());
        co_return;
      }
    }
    co_await ReadResponse(s, out, st);
  }

  asio::awaitable<void> Post(Url u, const HttpRequest& request, std::chrono::milliseconds timeout,
                             const std::string& pin, HttpResponse* out, Status* st) {
    http::request<http::string_body> req{http::verb::post, u.prefix + request.path, 11};
    req.set(http::field::host, u.host);
    req.set(http::field::content_type, std::string(protocol::kContentType));
    req.keep_alive(true);
    req.body() = request.body;
    req.prepare_payload();
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (cancelled) co_return;  // *st stays "not sent"
      bool reused = connected_to == u.key();
      if (!reused) {
        co_await Connect(u, timeout, pin, st);
        if (!st->ok()) co_return;
      }
      Lowest().expires_after(timeout);
      if (request.is_upload()) {
        if (secure) co_await ExchangeUpload(*secure, u, request, out, st);
        else co_await ExchangeUpload(*plain, u, request, out, st);
      } else if (secure) {
        co_await Exchange(*secure, req, out, st);
      } else {
        co_await Exchange(*plain, req, out, st);
      }
      if (st->ok()) co_return;
      Close();
      // A fresh connection failed: report it. So does an upload: the engine asks the server how much
      // arrived and sends only the rest, instead of the whole range again.
      if (!reused || request.is_upload()) co_return;
      // A kept-alive connection the server had closed: try once more on a new one (requests are idempotent).
    }
  }
};

HttpTransport::HttpTransport(std::optional<ProxyAddress> proxy) : impl_(new Impl) { impl_->proxy = std::move(proxy); }
HttpTransport::~HttpTransport() = default;

Result<HttpResponse> HttpTransport::Post(const std::string& base_url, const HttpRequest& request, int64_t timeout_ms,
                                         const std::string& tls_pin) {
  DALA_ASSIGN_OR_RETURN(Url u, ParseUrl(base_url));
  if (impl_->cancelled) return Status(Code::kIo, "cancelled");
  Status st(Code::kIo, "not sent");
  HttpResponse out;
  auto timeout = std::chrono::milliseconds(std::max<int64_t>(1, timeout_ms));
  asio::co_spawn(impl_->ioc, impl_->Post(u, request, timeout, tls_pin, &out, &st), [&](std::exception_ptr e) {
    if (e) st = Status(Code::kIo, "the connection failed unexpectedly");
  });
  impl_->ioc.restart();
  // Checked after restart (which would undo a stop() that came before it), right before run: a Cancel from
  // here on stops run(); one before is seen here. Either way the request is cut off, never left to time out.
  if (!impl_->cancelled) impl_->ioc.run();
  if (impl_->cancelled) {
    // The request's coroutine may still be waiting on the sockets: close them and let it end now, while
    // st and out (this frame's) still live; a later Post (a session goes on after a cancel) would otherwise
    // resume it and write into them. Cancel stops the context only once, so nothing interrupts this.
    impl_->Close();
    impl_->ioc.restart();
    impl_->ioc.run();
    return Status(Code::kIo, "cancelled");
  }
  if (!st.ok()) return st;
  return out;
}

void HttpTransport::Cancel() {
  // thread-safe: run() returns; the connection is closed by Post. Only the first Cancel stops the context,
  // so that Post can then run it to let the cut-off request end (until Reset).
  if (!impl_->cancelled.exchange(true)) impl_->ioc.stop();
}

void HttpTransport::Reset() { impl_->cancelled = false; }
uint64_t HttpTransport::bytes_sent() const { return impl_->sent; }
uint64_t HttpTransport::bytes_received() const { return impl_->received; }

}  // namespace dala::sync
