#include "desk/web/web_http.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <condition_variable>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "desk/web/web_app.h"

namespace dala::desk::web {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

constexpr size_t kMaxConnections = 32;
// A connection must send its request's header within kRequestSeconds of connecting or of its last
// answer (a TLS handshake included), and take each piece of an answer within kWriteSeconds; else it is
// shut down. Blocking reads and writes cannot time out by themselves (Asio waits again after a socket
// timeout), so a reaper thread enforces these deadlines.
constexpr int kRequestSeconds = 20, kWriteSeconds = 30;
constexpr size_t kChunk = 256 * 1024;

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded: '+' is a space, %XX a byte; a malformed escape is kept as it is.
std::string Decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && Hex(s[i + 1]) >= 0 && Hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(Hex(s[i + 1]) * 16 + Hex(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> Params(std::string_view s) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!s.empty() && out.size() < 200) {
    const size_t amp = s.find('&');
    std::string_view part = s.substr(0, amp);
    const size_t eq = part.find('=');
    if (!part.empty())
      out.emplace_back(Decode(part.substr(0, eq)), eq == std::string_view::npos ? "" : Decode(part.substr(eq + 1)));
    if (amp == std::string_view::npos) break;
    s.remove_prefix(amp + 1);
  }
  return out;
}

}  // namespace

struct WebServer::Impl {
  DeskStore& store;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::unique_ptr<ssl::context> tls;
  std::unique_ptr<App> app;
  std::string origin, host, url;
  std::thread accept_thread;
  std::mutex mu;
  std::set<int> open;                // sockets being served
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<Worker> workers;
  std::atomic<bool> stopping{false};
  std::atomic<size_t> active{0};
  std::map<int, std::chrono::steady_clock::time_point> deadlines;  // by socket, under mu
  std::thread reaper;
  std::condition_variable reaper_wake;

  // From now on, `fd` must make progress within `seconds` (0: no deadline while the request is handled).
  void Deadline(int fd, int seconds) {
    std::lock_guard lock(mu);
    if (seconds == 0)
      deadlines.erase(fd);
    else
      deadlines[fd] = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  }

  void Reap() {
    std::unique_lock lock(mu);
    while (!stopping) {
      reaper_wake.wait_for(lock, std::chrono::milliseconds(500));
      const auto now = std::chrono::steady_clock::now();
      for (auto it = deadlines.begin(); it != deadlines.end();) {
        if (it->second <= now) {
          ::shutdown(it->first, SHUT_RDWR);  // the blocked read or write fails; the thread ends the connection
          it = deadlines.erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  explicit Impl(DeskStore& s) : store(s) {}

  template <class Stream>
  void Serve(Stream& stream, int fd) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(16 * 1024);
      parser.body_limit(1 << 20);
      beast::error_code ec;
      Deadline(fd, kRequestSeconds);
      http::read(stream, buffer, parser, ec);
      if (ec) return;
      Deadline(fd, 0);  // while the desk works on it
      const auto& req = parser.get();
      const bool keep = req.keep_alive();
      // Only this desk's own name: a page elsewhere that re-binds a DNS name to 127.0.0.1 is refused.
      if (req[http::field::host] != host) {
        http::response<http::string_body> res{http::status::misdirected_request, req.version()};
        res.set(http::field::content_type, "text/plain; charset=utf-8");
        res.body() = "This desk answers only to " + host + "\n";
        Deadline(fd, kWriteSeconds);
        res.prepare_payload();
        http::write(stream, res, ec);
        return;
      }
      Request r;
      r.method = std::string(req.method_string());
      const std::string_view target = req.target();
      const size_t q = target.find('?');
      r.path = Decode(target.substr(0, q));
      if (q != std::string_view::npos) r.query = Params(target.substr(q + 1));
      r.cookie = std::string(req[http::field::cookie]);
      r.origin = std::string(req[http::field::origin]);
      r.range = std::string(req[http::field::range]);
      if (req.method() == http::verb::post &&
          std::string_view(req[http::field::content_type]).rfind("application/x-www-form-urlencoded", 0) == 0)
        r.form = Params(req.body());
      Response out = app->Handle(r);
      Deadline(fd, kWriteSeconds);
      const bool head = req.method() == http::verb::head;
      if (!out.media) {
        http::response<http::string_body> res{static_cast<http::status>(out.status), req.version()};
        res.set(http::field::content_type, out.content_type);
        for (const auto& [k, v] : out.headers) res.insert(k, v);
        res.keep_alive(keep);
        res.body() = head ? std::string() : std::move(out.body);
        res.prepare_payload();
        if (head) res.content_length(out.body.size());
        http::write(stream, res, ec);
      } else {
        // An attachment, decrypted a chunk at a time straight into the connection.
        http::response<http::buffer_body> res{static_cast<http::status>(out.status), req.version()};
        res.set(http::field::content_type, out.content_type);
        for (const auto& [k, v] : out.headers) res.insert(k, v);
        res.keep_alive(keep);
        res.content_length(out.length);
        res.body().data = nullptr;
        res.body().more = !head && out.length > 0;
        http::response_serializer<http::buffer_body> sr{res};
        http::write_header(stream, sr, ec);
        if (ec) return;
        std::vector<uint8_t> chunk(kChunk);
        uint64_t at = out.offset, left = head ? 0 : out.length;
        while (left > 0) {
          // A whole chunk per write (a read gives at most one 64 KiB piece).
          const size_t want = static_cast<size_t>(std::min<uint64_t>(left, kChunk));
          size_t filled = 0;
          while (filled < want) {
            auto n = out.media->ReadAt(at + filled, std::span<uint8_t>(chunk.data() + filled, want - filled));
            if (!n.ok() || *n == 0) return;  // an altered piece: the connection ends short, never with wrong bytes
            filled += *n;
          }
          res.body().data = chunk.data();
          res.body().size = filled;
          res.body().more = true;
          Deadline(fd, kWriteSeconds);
          http::write(stream, sr, ec);
          if (ec == http::error::need_buffer) ec = {};
          if (ec) return;
          at += filled;
          left -= filled;
        }
        if (!head && out.length > 0) {
          res.body().data = nullptr;
          res.body().more = false;
          http::write(stream, sr, ec);
          if (ec == http::error::need_buffer) ec = {};
        }
      }
      if (ec || !keep) return;
    }
  }

  void Connection(tcp::socket socket) {
    const int fd = socket.native_handle();
    beast::error_code nodelay_ec;
    // The header and the body go out in separate writes: without this, Nagle's algorithm and delayed
    // acknowledgements stall each answer by about 40 ms (measured: a 1-byte range took 44 ms, 0.1 ms with it).
    socket.set_option(tcp::no_delay(true), nodelay_ec);
    try {
      if (tls) {
        ssl::stream<tcp::socket&> stream(socket, *tls);
        beast::error_code ec;
        Deadline(fd, kRequestSeconds);
        stream.handshake(ssl::stream_base::server, ec);
        if (!ec) Serve(stream, fd);
        Deadline(fd, kRequestSeconds);
        stream.shutdown(ec);
      } else {
        Serve(socket, fd);
      }
    } catch (const std::exception&) {
      // A connection that fails ends alone.
    }
    beast::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    std::lock_guard lock(mu);
    open.erase(fd);
    deadlines.erase(fd);
    --active;
  }

  void Accept() {
    while (!stopping) {
      beast::error_code ec;
      tcp::socket socket(io);
      acceptor.accept(socket, ec);
      if (ec || stopping) {
        if (stopping) return;
        continue;
      }
      std::lock_guard lock(mu);
      // Threads that are done are joined here.
      for (auto it = workers.begin(); it != workers.end();) {
        if (*it->done) {
          it->thread.join();
          it = workers.erase(it);
        } else {
          ++it;
        }
      }
      if (active >= kMaxConnections) continue;  // the socket closes as it goes
      ++active;
      open.insert(socket.native_handle());
      auto done = std::make_shared<std::atomic<bool>>(false);
      workers.push_back({std::thread([this, done, s = std::move(socket)]() mutable {
                           Connection(std::move(s));
                           *done = true;
                         }),
                         done});
    }
  }
};

WebServer::WebServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
WebServer::~WebServer() { Stop(); }
const std::string& WebServer::url() const { return impl_->url; }

Result<std::unique_ptr<WebServer>> WebServer::Start(DeskStore& store, const ServeOptions& o) {
  auto impl = std::make_unique<Impl>(store);
  const size_t colon = o.listen.rfind(':');
  if (colon == std::string::npos) return Status(Code::kInvalidArgument, "--listen is HOST:PORT");
  std::string host = o.listen.substr(0, colon);
  const std::string port_text = o.listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (port_text.empty() || port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port_text) > 65535)
    return Status(Code::kInvalidArgument, "--listen's port must be 0 to 65535");
  beast::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) return Status(Code::kInvalidArgument, "--listen needs an IP address, not a name ('" + host + "')");
  const bool tls = !o.tls_cert.empty() || !o.tls_key.empty();
  if (address.is_unspecified() && o.name.empty())
    return Status(Code::kInvalidArgument, "listening on every address needs --name: the name browsers will use "
                                          "(the TLS certificate's)");
  if (o.name.find_first_of("/?#@ \r\n\t") != std::string::npos)
    return Status(Code::kInvalidArgument, "--name is HOST or HOST:PORT");
  if (!address.is_loopback() && !tls)
    return Status(Code::kInvalidArgument, "the desk serves other machines only over TLS: give --tls-cert and --tls-key "
                                          "(or listen on 127.0.0.1)");
  if (tls) {
    if (o.tls_cert.empty() || o.tls_key.empty()) return Status(Code::kInvalidArgument, "TLS needs both --tls-cert and --tls-key");
    impl->tls = std::make_unique<ssl::context>(ssl::context::tls_server);
    impl->tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                           ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    impl->tls->use_certificate_chain_file(o.tls_cert, ec);
    if (!ec) impl->tls->use_private_key_file(o.tls_key, ssl::context::pem, ec);
    if (ec) return Status(Code::kInvalidArgument, "the TLS certificate or key cannot be used: " + ec.message());
  }
  const tcp::endpoint at(address, static_cast<uint16_t>(std::stoul(port_text)));
  impl->acceptor.open(at.protocol(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(at, ec);
  if (!ec) impl->acceptor.listen(64, ec);
  if (ec) return Status(Code::kIo, "cannot listen on " + o.listen + ": " + ec.message());
  const uint16_t port = impl->acceptor.local_endpoint().port();
  const std::string shown = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  impl->host = shown + ":" + std::to_string(port);
  if (!o.name.empty()) {  // HOST or HOST:PORT, as the browser will write it in Host
    const bool has_port = o.name.front() == '[' ? o.name.find("]:") != std::string::npos
                                                : o.name.find(':') != std::string::npos;
    impl->host = has_port ? o.name : o.name + ":" + std::to_string(port);
  }
  impl->origin = std::string(tls ? "https://" : "http://") + impl->host;
  std::unique_ptr<TileSource> tiles;
  if (!o.tiles_dir.empty()) {
    DALA_ASSIGN_OR_RETURN(tiles, TileSource::Open(o.tiles_dir));
  }
  impl->app = std::make_unique<App>(store, impl->origin, tls, std::move(tiles));
  impl->url = LoginUrl(*impl->app, impl->origin);
  Impl* raw = impl.get();
  impl->accept_thread = std::thread([raw] { raw->Accept(); });
  impl->reaper = std::thread([raw] { raw->Reap(); });
  return std::unique_ptr<WebServer>(new WebServer(std::move(impl)));
}

void WebServer::Stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  beast::error_code ec;
  ::shutdown(impl_->acceptor.native_handle(), SHUT_RDWR);  // wakes the blocking accept
  impl_->acceptor.close(ec);
  if (impl_->accept_thread.joinable()) impl_->accept_thread.join();
  {
    std::lock_guard lock(impl_->mu);
    impl_->reaper_wake.notify_all();
  }
  if (impl_->reaper.joinable()) impl_->reaper.join();
  std::list<Impl::Worker> workers;
  {
    std::lock_guard lock(impl_->mu);
    for (int fd : impl_->open) ::shutdown(fd, SHUT_RDWR);
    workers.swap(impl_->workers);
  }
  for (auto& w : workers)
    if (w.thread.joinable()) w.thread.join();
}

}  // namespace dala::desk::web
